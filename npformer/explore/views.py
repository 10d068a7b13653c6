"""What each view of `npformer explore` shows, as plain JSON-able dicts.

Every function takes a loaded checkpoint (checkpoint.Checkpoint) and the user's
input, and calls the code the rest of npformer uses: the tokenizers, the model's
`attention_maps` and `forward`, decoding.py's greedy decoding, beam search and
sampling filters. Nothing here re-implements model math; these functions only
pick numbers out and label them. The HTTP layer (server.py) validates requests
and turns these dicts into JSON; the tests call them directly.

Shapes: T tokens the model reads, S source tokens, H heads, C d_model, V vocab,
K classes.
"""
import numpy as np

from ..models.decoding import beam_search, draw_tokens, filter_logits, greedy_decode, tempered
from ..nn.layers import pool_weights
from ..nn.params import embedding_keys
from ..tools.plots import attention_for_sentence
from ..tokenizers import BOS_ID, EOS_ID, UNK_ID

MAX_TEXT_CHARS = 1000  # longest text a request may carry (the models read far fewer tokens)
SHOW_NEXT = 20  # candidates listed by the next-token view
SHOW_STEP = 5  # alternatives listed for each step of a translation
NEIGHBOURS = 8  # nearest tokens listed when one is hovered in the embedding view
MAX_BEAM = 8  # widest beam the translation view runs

KINDS = {"Transformer": "translator", "LanguageModel": "language model",
         "Classifier": "classifier"}


class ViewError(ValueError):
    """A request a view cannot answer (text too long, wrong kind of model): one line."""


def kind_of(ckpt):
    """"translator", "language model" or "classifier"."""
    return KINDS[type(ckpt.model).__name__]


def _need(ckpt, *kinds):
    if kind_of(ckpt) not in kinds:
        raise ViewError(f"this view needs a {' or '.join(kinds)}; the model is a {kind_of(ckpt)}")


def _check_text(text, allow_empty=False):
    if not isinstance(text, str):
        raise ViewError("text must be a string")
    if len(text) > MAX_TEXT_CHARS:
        raise ViewError(f"the text has {len(text)} characters; at most {MAX_TEXT_CHARS}")
    if not text.strip() and not allow_empty:
        raise ViewError("type some text first")
    return text


def _without_pad(logits, pad_id):
    """The logits a decoder chooses from: PAD's column -inf, as decoding.py's loops set it.

    Shapes: logits (...,V) -> (...,V) float64 copy
    """
    z = np.array(logits, dtype=np.float64)  # (...,V)
    z[..., pad_id] = -np.inf
    return z


def _softmax(z):
    """Probabilities from logits; a -inf logit gets probability 0.

    Shapes: (...,V) -> (...,V)
    """
    e = np.exp(z - z.max(axis=-1, keepdims=True))  # (...,V)
    return e / e.sum(axis=-1, keepdims=True)


def _piece(tok, token_id):
    """The readable piece of one id ("<eos>", "<unk>" for the specials)."""
    return tok.id_to_token(int(token_id))


# ------------------------------------------------------------------------ summary
def describe(ckpt):
    """What the page needs to know about a model: its kind, sizes and tokenizers."""
    cfg = ckpt.model.config
    out = {"kind": kind_of(ckpt), "architecture": cfg.kind, "d_model": cfg.d_model,
           "n_heads": cfg.n_heads, "n_encoder_layers": cfg.n_encoder_layers,
           "n_decoder_layers": cfg.n_decoder_layers, "max_len": cfg.max_len,
           "n_params": int(ckpt.model.n_params), "tokenizer": ckpt.src_tokenizer.kind,
           "vocab_size": ckpt.src_tokenizer.vocab_size, "labels": list(ckpt.labels),
           "pooling": cfg.pooling if ckpt.labels else None,
           "embedding_sides": list(_embedding_sides(ckpt)),
           "step": ckpt.state.get("step")}
    if kind_of(ckpt) == "translator":
        out["target_tokenizer"] = ckpt.tgt_tokenizer.kind
        out["target_vocab_size"] = ckpt.tgt_tokenizer.vocab_size
    return out


# ------------------------------------------------------------------------- tokens
def _chunks(tok, text):
    """The text cut where the tokenizer cuts words: BPE pre-tokenizer chunks, words or characters."""
    if tok.kind == "bpe":
        return tok.pretokenize(text)
    return tok.split(text)


def _framing(ckpt, ids):
    """The ids the model reads for these text ids, with BOS/EOS where its task adds them."""
    kind = kind_of(ckpt)
    if kind == "translator":
        return ids + [EOS_ID]  # the encoder reads the sentence and EOS (evaluation.py)
    if kind == "language model":
        return [BOS_ID] + ids  # the decoder reads BOS, then the prompt (decoding.continue_text)
    return [BOS_ID] + ids + [EOS_ID]  # the classifier (tasks.py, classify)


def token_view(ckpt, text):
    """The text split by the model's (source) tokenizer, word by word.

    Each word (a BPE chunk, a whitespace word or a character) lists its pieces and
    ids; a word of more than one piece is split into BPE word parts.
    """
    text = _check_text(text)
    tok = ckpt.src_tokenizer
    words = []
    for chunk in _chunks(tok, text):
        ids = tok.encode(chunk)
        words.append({"text": chunk, "pieces": [{"id": i, "piece": _piece(tok, i),
                                                 "unknown": i == UNK_ID} for i in ids]})
    ids = tok.encode(text)
    framed = _framing(ckpt, ids)
    return {"tokenizer": tok.kind, "vocab_size": tok.vocab_size, "words": words, "ids": ids,
            "model_reads": [{"id": i, "piece": _piece(tok, i)} for i in framed],
            "max_len": ckpt.model.config.max_len, "fits": len(framed) <= ckpt.model.config.max_len}


# --------------------------------------------------------------------- embeddings
def _embedding_sides(ckpt):
    """{side name: (parameter key, tokenizer)} of the embedding tables the model has."""
    cfg, params = ckpt.model.config, ckpt.model.params
    src_key, tgt_key = embedding_keys(cfg)
    sides = {}
    if kind_of(ckpt) == "translator" and src_key != tgt_key:
        sides["source"] = (src_key, ckpt.src_tokenizer)
        sides["target"] = (tgt_key, ckpt.tgt_tokenizer)
    else:  # one table: shared, or a decoder-only / encoder-only body
        key = next(k for k in (tgt_key, src_key) if k in params)
        sides["tokens"] = (key, ckpt.src_tokenizer)
    return sides


def _side(ckpt, side):
    sides = _embedding_sides(ckpt)
    if side not in sides:
        raise ViewError(f"side {side!r}: this model has {', '.join(sides)}")
    return sides[side]


def pca_2d(W):
    """The first two principal components of the rows of W, and their share of the variance.

    Signs are fixed so that each component's largest coordinate is positive (an SVD
    may return either sign). Shapes: W (V,C) -> coords (V,2), explained (2,)
    """
    X = W.astype(np.float64) - W.mean(axis=0)  # (V,C) centred
    _, s, Vt = np.linalg.svd(X, full_matrices=False)  # Vt (C',C): directions, best first
    coords = X @ Vt[:2].T  # (V,C) @ (C,2) -> (V,2)
    flip = np.sign(coords[np.abs(coords).argmax(axis=0), [0, 1]])  # (2,)
    coords *= np.where(flip == 0, 1.0, flip)
    explained = s[:2] ** 2 / max(float((s ** 2).sum()), 1e-300)  # (2,)
    return coords, explained


def embedding_view(ckpt, side):
    """A 2-D PCA projection of an embedding table: one point per token id."""
    key, tok = _side(ckpt, side)
    W = ckpt.model.params[key]  # (V,C)
    coords, explained = pca_2d(W)
    return {"side": side, "parameter": key, "tokens": [_piece(tok, i) for i in range(len(W))],
            "x": coords[:, 0].tolist(), "y": coords[:, 1].tolist(),
            "explained": explained.tolist(), "d_model": int(W.shape[1])}


def neighbours(ckpt, side, token_id, k=NEIGHBOURS):
    """The k tokens whose embedding rows point most nearly the same way (cosine), in all C dims."""
    key, tok = _side(ckpt, side)
    W = ckpt.model.params[key].astype(np.float64)  # (V,C)
    if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id < len(W):
        raise ViewError(f"token id must be an integer in [0, {len(W)})")
    norms = np.maximum(np.linalg.norm(W, axis=1), 1e-12)  # (V,)
    cos = (W @ W[token_id]) / (norms * norms[token_id])  # (V,C) @ (C,) -> (V,)
    cos[token_id] = -np.inf  # not its own neighbour
    order = np.argsort(-cos, kind="stable")[:k]
    return {"id": token_id, "piece": _piece(tok, token_id),
            "neighbours": [{"id": int(i), "piece": _piece(tok, i), "cosine": float(cos[i])}
                           for i in order]}


# ---------------------------------------------------------------------- attention
def _op_kind(name):
    if name.endswith("cross_attn"):
        return "cross"
    return "causal" if name.startswith("decoder") else "self"


def head_distances(P_list):
    """Mean total-variation distance between the attention rows of every pair of heads.

    TV(p, q) = 1/2 sum_j |p_j - q_j| is 0 for identical rows and 1 for rows with
    no key in common. Shapes: list of N arrays (T,S) -> (N,N)
    """
    P = np.stack(P_list).astype(np.float64)  # (N,T,S)
    diff = np.abs(P[:, None] - P[None, :])  # (N,N,T,S)
    return 0.5 * diff.sum(axis=-1).mean(axis=-1)  # (N,N)


def _labelled(ckpt, text):
    """Attention maps of the text and the tokens labelling their rows and columns.

    Returns (maps {op: P (H,T,S)}, source labels, target labels or None, translation).
    """
    model, tok = ckpt.model, ckpt.src_tokenizer
    if kind_of(ckpt) == "translator":
        try:  # exactly what `npformer attention` draws
            return attention_for_sentence(ckpt, text)
        except ValueError as err:
            raise ViewError(str(err)) from None
    ids = _framing(ckpt, tok.encode(text))
    if len(ids) > model.config.max_len:
        raise ViewError(f"the text has {len(ids)} tokens with BOS/EOS; this model reads at "
                        f"most {model.config.max_len}")
    maps = {name: P[0] for name, P in model.attention_maps(np.array([ids])).items()}  # (H,T,T)
    return maps, [_piece(tok, i) for i in ids], None, None


def attention_view(ckpt, text):
    """Every attention op's weights for the text: each layer and head, with token labels.

    translator: the source sentence + EOS through the encoder, and its greedy
    translation (BOS + output) through the decoder, as `npformer attention` does.
    language model: BOS + text, causal. classifier: BOS + text + EOS.
    Each op lists P (H,T,S): row t is where query token t looks, summing to 1.
    `groups` compares heads: ops with the same queries and keys, and the mean
    total-variation distance between every two of their heads.
    """
    text = _check_text(text)
    maps, src_labels, tgt_labels, translation = _labelled(ckpt, text)
    ops, groups = [], {}
    for name, P in maps.items():  # P (H,T,S)
        kind = _op_kind(name)
        if name.startswith("encoder") or tgt_labels is None:  # one sequence: the text
            queries = keys = src_labels
        else:  # a translator's decoder: target queries, target or (cross) source keys
            queries, keys = tgt_labels, src_labels if kind == "cross" else tgt_labels
        layer = int(name.split(".")[1])
        ops.append({"name": name, "kind": kind, "layer": layer, "queries": queries,
                    "keys": keys, "P": P.tolist()})
        groups.setdefault(kind, []).append((name, P))
    compare = []
    for kind, members in groups.items():
        heads = [(name, h) for name, P in members for h in range(P.shape[0])]
        D = head_distances([P[h] for _, P in members for h in range(P.shape[0])])
        compare.append({"kind": kind, "heads": [{"op": n, "head": h} for n, h in heads],
                        "distance": D.tolist()})
    return {"kind": kind_of(ckpt), "ops": ops, "compare": compare, "translation": translation}


# --------------------------------------------------------------------- next token
def _prompt(ckpt, text):
    """BOS + the text's ids, cut at the start to leave room for one more token (as generate does)."""
    ids = ckpt.src_tokenizer.encode(text)
    limit = ckpt.model.config.max_len - 2  # BOS + prompt + the next token fit in max_len
    cut = max(len(ids) - limit, 0)
    return [BOS_ID] + ids[cut:], cut


def _append(tok, text, token_id):
    """The text with one more token: the piece after the text, as `decode` would join it."""
    piece = tok.decode([token_id])
    if getattr(tok, "joiner", "") == " ":  # word tokenizer: pieces joined by one space
        return f"{text.rstrip()} {piece}"
    return text + piece


def next_token_view(ckpt, text, temperature=1.0, top_k=0, top_p=1.0, seed=None,
                    show=SHOW_NEXT):
    """The language model's distribution over the token after the text, and the sampler's.

    model: softmax of the last position's logits (PAD banned, as the decoders do).
    sampler: the logits divided by the temperature (decoding.tempered), filtered by top-k
    and top-p (decoding.filter_logits), softmax: what `npformer generate --temperature T
    --top-k K --top-p P` draws from. greedy: the most likely token (temperature 0).
    With a seed, one token is drawn from the sampler's distribution (draw_tokens).
    """
    _need(ckpt, "language model")
    text = _check_text(text, allow_empty=True)  # an empty prompt: what the model starts with
    if not temperature > 0:
        raise ViewError("temperature must be > 0 (the greedy token is shown anyway)")
    try:
        prompt, cut = _prompt(ckpt, text)
        logits = ckpt.model.forward(np.array([prompt]))[:, -1]  # (1,T,V) -> (1,V)
        logits = _without_pad(logits, ckpt.model.config.pad_id)  # (1,V)
        filtered = filter_logits(tempered(logits, temperature), top_k, top_p)  # (1,V)
    except ValueError as err:
        raise ViewError(str(err)) from None
    p_model = _softmax(logits)[0]  # (V,)
    p_sample = _softmax(filtered)[0]  # (V,)
    tok = ckpt.src_tokenizer
    order = np.argsort(-p_model, kind="stable")[:show]

    def entry(i):
        i = int(i)
        return {"id": i, "piece": _piece(tok, i), "p_model": float(p_model[i]),
                "p_sample": float(p_sample[i]), "end": i == EOS_ID,
                "append": None if i == EOS_ID else _append(tok, text, i)}

    out = {"prompt": [_piece(tok, i) for i in prompt], "cut": cut,
           "candidates": [entry(i) for i in order], "greedy": entry(logits[0].argmax()),
           "kept": int((p_sample > 0).sum()), "vocab_size": int(p_model.size),
           "entropy_model": float(-(p_model[p_model > 0] * np.log(p_model[p_model > 0])).sum()),
           "sampled": None}
    if seed is not None:
        out["sampled"] = entry(draw_tokens(filtered, np.random.default_rng(seed))[0])
    return out


# -------------------------------------------------------------------- translation
def translation_view(ckpt, text, method="greedy", beam_size=4, length_penalty=0.6):
    """A translation, step by step: each output token, its alternatives, its cross-attention.

    The output comes from decoding.greedy_decode or beam_search (as `npformer
    translate` and `--beam K`). Then one forward pass over BOS + output gives, at
    each step t, the distribution over the token t given the source and the tokens
    before it, and every decoder layer's cross-attention row t: where that step
    looked in the source. (The decoder is causal, so row t is exactly what step t
    computed while decoding.)
    """
    _need(ckpt, "translator")
    text = _check_text(text)
    model, src_tok, tgt_tok = ckpt.model, ckpt.src_tokenizer, ckpt.tgt_tokenizer
    ids = src_tok.encode(text)
    if len(ids) + 1 > model.config.max_len:
        raise ViewError(f"the sentence has {len(ids)} tokens; this model reads at most "
                        f"{model.config.max_len - 1}")
    src = np.array([ids + [EOS_ID]])  # (1,S)
    if method == "greedy":
        out = greedy_decode(model, src)[0]
    elif method == "beam":
        if isinstance(beam_size, bool) or not isinstance(beam_size, int) \
                or not 1 <= beam_size <= MAX_BEAM:
            raise ViewError(f"beam size must be an integer in [1, {MAX_BEAM}]")
        if not 0 <= length_penalty <= 10:
            raise ViewError("length penalty must be in [0, 10]")
        out = beam_search(model, src, beam_size=beam_size, length_penalty=length_penalty)[0]
    else:
        raise ViewError(f"method {method!r}: choose greedy or beam")
    tgt_in = np.array([[BOS_ID] + out[: model.config.max_len - 1]])  # (1,T)
    logits = _without_pad(model.forward(src, tgt_in)[0], model.config.pad_id)  # (T,V)
    probs = _softmax(logits)  # (T,V)
    maps = model.attention_maps(src, tgt_in)
    cross = [maps[f"decoder.{i}.cross_attn"][0] for i in range(model.config.n_decoder_layers)]
    steps = []
    for t in range(tgt_in.shape[1]):
        chosen = out[t] if t < len(out) else EOS_ID  # the last step chose EOS (or hit max_len)
        top = np.argsort(-probs[t], kind="stable")[:SHOW_STEP]
        steps.append({"token": {"id": int(chosen), "piece": _piece(tgt_tok, chosen),
                                "p": float(probs[t, chosen])},
                      "rank": int((probs[t] > probs[t, chosen]).sum()) + 1,
                      "alternatives": [{"id": int(i), "piece": _piece(tgt_tok, i),
                                        "p": float(probs[t, i])} for i in top],
                      "cross": [P[:, t, :].tolist() for P in cross]})  # layers x (H,S)
    return {"method": method, "source": [_piece(src_tok, i) for i in src[0]],
            "output": [_piece(tgt_tok, i) for i in out], "translation": tgt_tok.decode(out),
            "steps": steps, "n_heads": model.config.n_heads}


# ------------------------------------------------------------------ classification
def classification_view(ckpt, text):
    """Label probabilities, and which positions the pooled vector the head reads came from.

    pool: the pooling weights (layers/pooling.py): the pooled vector is
    sum_t w_t x_t over the last block's outputs. looked_at: the last layer's
    attention rows of those positions, sum_t w_t P[h, t, :], per head: where the
    pooled positions gathered their information in that layer (one layer only: a
    hint, not a full attribution).
    """
    _need(ckpt, "classifier")
    text = _check_text(text)
    model, tok = ckpt.model, ckpt.src_tokenizer
    body = tok.encode(text)
    limit = model.config.max_len - 2
    ids = np.array([[BOS_ID] + body[:limit] + [EOS_ID]])  # (1,T), as `npformer classify`
    probs = model.predict(ids)[0]  # (K,)
    w = pool_weights(ids != model.config.pad_id, model.config.pooling, np.float64)[0]  # (T,)
    maps = model.attention_maps(ids)
    last = maps[f"{model.body}.{len(maps) - 1}.self_attn"][0].astype(np.float64)  # (H,T,T)
    looked = np.einsum("t,hts->hs", w, last)  # (T,) (H,T,T) -> (H,T)
    return {"labels": list(ckpt.labels), "probs": probs.tolist(),
            "best": ckpt.labels[int(probs.argmax())], "tokens": [_piece(tok, i) for i in ids[0]],
            "cut": max(len(body) - limit, 0), "pooling": model.config.pooling,
            "pool": w.tolist(), "looked_at": looked.tolist(),
            "layer": f"{model.body}.{len(maps) - 1}.self_attn"}
