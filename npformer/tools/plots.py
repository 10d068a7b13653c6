"""Pictures: attention heatmaps (used by `npformer attention` and the notebooks)."""
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_attention(P, row_labels, col_labels, title, ax=None):
    """Draw one attention matrix (T queries x S keys) with token labels.

    Shapes: P (T,S)
    """
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(1 + 0.45 * len(col_labels), 1 + 0.4 * len(row_labels)))
    ax.imshow(P, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(col_labels)))
    ax.set_xticklabels(col_labels, rotation=60, ha="right")
    ax.set_yticks(range(len(row_labels)))
    ax.set_yticklabels(row_labels)
    ax.set_xlabel("attends to (keys)")
    ax.set_ylabel("query position")
    ax.set_title(title)
    return ax


def attention_for_sentence(ckpt, sentence):
    """Translate one sentence greedily and return its attention maps and token labels.

    Returns (maps {op name: P (H,T,S)}, source labels, target-input labels, translation).
    """
    from ..models.decoding import greedy_decode
    from ..tokenizers import BOS_ID, EOS_ID

    model, src_tok, tgt_tok = ckpt.model, ckpt.src_tokenizer, ckpt.tgt_tokenizer
    ids = src_tok.encode(sentence)
    if not ids:
        raise ValueError("the sentence is empty")
    if len(ids) + 1 > model.config.max_len:
        raise ValueError(f"the sentence has {len(ids)} tokens; this model reads at most "
                         f"{model.config.max_len - 1}")
    src = np.array([ids + [EOS_ID]])  # (1,S)
    out = greedy_decode(model, src)[0]
    tgt_in = np.array([[BOS_ID] + out[: model.config.max_len - 1]])  # (1,T)
    maps = {name: P[0] for name, P in model.attention_maps(src, tgt_in).items()}  # (H,T,S)
    src_labels = [src_tok.id_to_token(i) for i in ids] + ["<eos>"]
    tgt_labels = ["<bos>"] + [tgt_tok.id_to_token(i) for i in out]
    return maps, src_labels, tgt_labels[: tgt_in.shape[1]], tgt_tok.decode(out)


def save_attention_maps(ckpt, sentence, out_dir):
    """One PNG per attention op (all heads side by side). Returns (paths, translation)."""
    plt = _plt()
    maps, src_labels, tgt_labels, translation = attention_for_sentence(ckpt, sentence)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, P in maps.items():  # P (H,T,S)
        rows = src_labels if name.startswith("encoder") else tgt_labels
        cols = tgt_labels if "self_attn" in name and name.startswith("decoder") else src_labels
        H = P.shape[0]
        fig, axes = plt.subplots(1, H, figsize=(H * (1 + 0.4 * len(cols)), 1.5 + 0.4 * len(rows)),
                                 squeeze=False)
        for h in range(H):
            plot_attention(P[h], rows, cols, f"head {h}", ax=axes[0, h])
        kind = ("encoder self-attention" if name.startswith("encoder") else
                "decoder self-attention (causal)" if "self_attn" in name else "cross-attention")
        fig.suptitle(f"{name}: {kind}")
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths, translation
