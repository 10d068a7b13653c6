"""NumPy twin of the fused AdamW update (adamw_nb.py): one parameter, in place.

    p <- p * decay                               decay = 1 - lr * wd (1: no decay)
    m <- m + (1 - b1) (g - m)                    = b1 m + (1 - b1) g, in torch's lerp form
    v <- b2 v + (1 - b2) g g
    p <- p - step_size * m / (sqrt(v) / bc2_sqrt + eps)
with step_size = lr / (1 - b1^t) and bc2_sqrt = sqrt(1 - b2^t). Each line is one
NumPy pass over the arrays; `buf` is a scratch array of p's shape and dtype, so the
update allocates nothing.
Shapes: p, g, m, v, buf all (...), one shape.
"""
import numpy as np


def adamw_update(p, g, m, v, buf, decay, b1, b2, eps, step_size, bc2_sqrt):
    """One AdamW step of parameter p (in place, with its moments m, v). Shapes: all (...)"""
    if decay != 1.0:
        p *= decay
    np.subtract(g, m, out=buf)
    buf *= 1.0 - b1
    m += buf  # m <- m + (1-b1)(g - m)
    v *= b2
    np.multiply(g, g, out=buf)
    buf *= 1.0 - b2
    v += buf  # v <- b2 v + (1-b2) g^2
    np.sqrt(v, out=buf)
    buf /= bc2_sqrt
    buf += eps
    np.divide(m, buf, out=buf)
    buf *= step_size
    p -= buf  # p <- p - step_size * m / (sqrt(v)/bc2_sqrt + eps)
