"""Matrix products for the "numba" backend: OpenBLAS, plus a jitted reference loop.

Shapes: M, K, N matrix sizes; G a batch of independent products
(in attention G = B*H).

    out[i, j] = sum_k a[i, k] * b[k, j]

`matmul` and `bmm`, what the backend exports, are np.matmul: OpenBLAS, whose
hand-written micro-kernels keep a tile of `out` in registers, pack `a` and `b`
into cache-sized panels and use FMA. On every product a transformer of this
project makes, OpenBLAS is 1.6x to 15x faster than jitted loops (the measured
table is in docs/performance.md, "Matrix products"), so the model never runs
the loops; only matrices of at most ~64 multiply-adds, smaller than any model
shape, were faster in them.

`matmul_loops` / `bmm_loops` are the readable reference: a Numba triple loop in
i-k-j order, out[i, :] += a[i, k] * b[k, :]. The innermost loop walks one row of
`b` and one row of `out`, both contiguous, so LLVM turns it into SIMD code. The
tests check them against np.matmul; benchmarks/kernels.py times them.
"""
import numpy as np
from numba import njit


@njit(cache=True)
def matmul_loops(a, b):
    """Matrix product as three loops, i-k-j order (readable reference).

    Shapes: a (M,K), b (K,N) -> out (M,N); a and b C-contiguous, same dtype.
    """
    M, K = a.shape
    N = b.shape[1]
    out = np.zeros((M, N), dtype=a.dtype)  # (M,N)
    for i in range(M):
        for k in range(K):
            a_ik = a[i, k]
            for j in range(N):  # contiguous rows of b and out: SIMD
                out[i, j] += a_ik * b[k, j]
    return out


@njit(cache=True)
def bmm_loops(a, b):
    """Batched matrix product, one i-k-j triple loop per matrix (readable reference).

    Shapes: a (G,M,K), b (G,K,N) -> out (G,M,N); a and b C-contiguous, same dtype.
    """
    G, M, K = a.shape
    N = b.shape[2]
    out = np.zeros((G, M, N), dtype=a.dtype)  # (G,M,N)
    for g in range(G):
        for i in range(M):
            for k in range(K):
                a_ik = a[g, i, k]
                for j in range(N):
                    out[g, i, j] += a_ik * b[g, k, j]
    return out


def matmul(a, b):
    """Plain matrix product (OpenBLAS).

    Shapes: a (M,K), b (K,N) -> (M,N)
    """
    return a @ b  # (M,K) @ (K,N) -> (M,N)


def bmm(a, b, out=None):
    """Batched matrix product (OpenBLAS, one call per matrix), written into `out` if given.

    Shapes: a (...,M,K), b (...,K,N) -> (...,M,N)
    """
    return np.matmul(a, b, out=out)  # (...,M,K) @ (...,K,N) -> (...,M,N)
