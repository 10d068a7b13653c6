"""What training changes in the weights: how much, and in how many directions.

Shapes: a weight matrix W (m,n); its change dW = W_after - W_before; r a rank.

  relative change   ||dW||_F / ||W_before||_F, per group of weights (layer and kind)
  spectrum          the singular values s_1 >= s_2 >= ... of dW
  energy in top k   (s_1^2 + .. + s_k^2) / (s_1^2 + s_2^2 + ..): 1 when dW has rank <= k
  effective rank    exp(entropy of s_i^2 / sum s^2): about k for k equal directions
  rank-r update     W_before + the best rank-r approximation of dW (its r largest
                    singular directions, Eckart-Young): the most a LoRA update of
                    rank r could express

LoRA (Hu et al. 2021) trains only a low-rank dW = B A per matrix; that it matches
full fine-tuning is evidence that the change fine-tuning needs is close to low rank
(Aghajanyan et al. 2021, intrinsic dimension). Notebook 11 measures it, with the
same measure on a model trained from scratch as the control.
"""
import numpy as np


def matrix_keys(params):
    """The 2-D weight matrices of a body that LoRA would adapt (attention and feed-forward).

    Embeddings, the classification head, norms and biases are left out.
    """
    return [k for k, v in params.items() if v.ndim == 2 and not k.startswith("head.")
            and "embed" not in k and not k.endswith("_pos.W")]


def group_of(key):
    """A readable group for a parameter key: "layer 0 attention", "embedding", ..."""
    parts = key.split(".")
    if parts[0] in ("decoder", "encoder") and parts[1].isdigit():
        kind = {"self_attn": "attention", "ffn": "feed-forward"}.get(parts[2], "layer norms")
        return f"layer {parts[1]} {kind}"
    return {"tgt_embed": "embedding", "src_embed": "embedding", "embed": "embedding",
            "decoder": "final layer norm", "encoder": "final layer norm"}.get(parts[0], parts[0])


def relative_change(before, after):
    """{group: ||W_after - W_before|| / ||W_before||} over the keys both dicts have."""
    sums = {}
    for key, w0 in before.items():
        if key not in after:
            continue
        num, den = sums.get(group_of(key), (0.0, 0.0))
        diff = after[key].astype(np.float64) - w0
        sums[group_of(key)] = (num + float((diff ** 2).sum()), den + float((w0.astype(
            np.float64) ** 2).sum()))
    return {g: float(np.sqrt(num / den)) for g, (num, den) in sums.items()}


def spectrum(before, after, key):
    """Singular values of the change of one matrix, largest first. Shapes: -> (min(m,n),)"""
    diff = after[key].astype(np.float64) - before[key]  # (m,n)
    return np.linalg.svd(diff, compute_uv=False)


def energy_in_top(s, k):
    """Share of ||dW||_F^2 in the k largest singular values s (sorted, largest first)."""
    e = np.asarray(s, np.float64) ** 2
    return float(e[:k].sum() / e.sum()) if e.sum() > 0 else 1.0


def effective_rank(s):
    """exp of the entropy of the normalised squared singular values (1 for rank 1)."""
    e = np.asarray(s, np.float64) ** 2
    p = e[e > 0] / e.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def low_rank_update(before, after, rank, keys=None):
    """`after` with the change of each matrix in `keys` cut to its best rank-`rank` part.

    Keys not in `keys` (default: matrix_keys(after)) keep their value in `after`.
    Returns a new dict {key: array} in `after`'s dtypes.
    """
    keys = matrix_keys(after) if keys is None else keys
    out = {k: v.copy() for k, v in after.items()}
    for key in keys:
        diff = after[key].astype(np.float64) - before[key]  # (m,n)
        U, s, Vt = np.linalg.svd(diff, full_matrices=False)  # (m,q) (q,) (q,n)
        part = (U[:, :rank] * s[:rank]) @ Vt[:rank]  # (m,r) @ (r,n) -> (m,n)
        out[key] = (before[key] + part).astype(after[key].dtype)
    return out
