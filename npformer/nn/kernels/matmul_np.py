"""NumPy twins of the matmul family: the readable ground truth.

Shapes: M, K, N matrix sizes; G a batch of independent products
(in attention G = B*H).
"""
import numpy as np


def matmul(a, b):
    """Plain matrix product.

    Shapes: a (M,K), b (K,N) -> (M,N)
    """
    return a @ b  # (M,K) @ (K,N) -> (M,N)


def bmm(a, b, out=None):
    """Batched matrix product over the leading axes (written into `out` if given).

    a and b may be strided views (e.g. one head's slice of a packed projection).
    Shapes: a (...,M,K), b (...,K,N) -> (...,M,N)
    """
    return np.matmul(a, b, out=out)  # (...,M,K) @ (...,K,N) -> (...,M,N)
