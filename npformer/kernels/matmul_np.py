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


def bmm(a, b):
    """Batched matrix product over a leading batch axis.

    Shapes: a (G,M,K), b (G,K,N) -> (G,M,N)
    """
    return np.matmul(a, b)  # (G,M,K) @ (G,K,N) -> (G,M,N)
