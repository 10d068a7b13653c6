"""NumPy twin of fused softmax + cross-entropy with label smoothing.

Shapes: N token positions (B*T), V vocabulary.
Target distribution with smoothing eps: q = (1 - eps) * onehot(target) + eps / V
(the convention of torch.nn.CrossEntropyLoss(label_smoothing=eps)).
Rows whose target equals `ignore_id` (padding) contribute nothing.
loss = mean over counted rows of  -sum_v q_v * log softmax(logits)_v
dlogits = (softmax(logits) - q) / n_valid on counted rows, 0 elsewhere.
Loss and gradient come out of one pass. Derivation: docs/derivations/cross_entropy.md.
"""
import numpy as np


def cross_entropy_forward_backward(logits, targets, ignore_id, smoothing):
    """Mean smoothed cross-entropy and its gradient, in one pass.

    Shapes: logits (N,V), targets (N,) int -> loss (scalar float), n_valid int,
            dlogits (N,V)
    """
    n_rows, vocab = logits.shape
    valid = targets != ignore_id  # (N,)
    n_valid = int(valid.sum())
    zmax = logits.max(axis=1, keepdims=True)  # (N,1)
    z = logits - zmax  # (N,V)
    logsumexp = np.log(np.exp(z).sum(axis=1, keepdims=True))  # (N,1)
    logp = z - logsumexp  # (N,V) log-probabilities
    safe_t = np.where(valid, targets, 0)  # (N,) padded rows point anywhere
    nll = -logp[np.arange(n_rows), safe_t]  # (N,)
    smooth = -logp.mean(axis=1)  # (N,) cross-entropy against the uniform distribution
    per_row = (1.0 - smoothing) * nll + smoothing * smooth  # (N,)
    denom = max(n_valid, 1)
    loss = float((per_row * valid).sum() / denom)

    dlogits = np.exp(logp)  # (N,V) softmax
    dlogits -= smoothing / vocab
    dlogits[np.arange(n_rows), safe_t] -= 1.0 - smoothing
    dlogits *= (valid / denom)[:, None]  # zero for padding, 1/n_valid otherwise
    return loss, n_valid, dlogits.astype(logits.dtype, copy=False)
