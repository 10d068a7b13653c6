"""Jitted matmul family, and the router that decides who does the work.

Shapes: M, K, N matrix sizes; G a batch of independent products
(in attention G = B*H).

    out[i, j] = sum_k a[i, k] * b[k, j]

Two ways to compute it live here:

* `matmul_loops` / `bmm_loops`: a readable Numba triple loop in i-k-j order,
  out[i, :] += a[i, k] * b[k, :]. The innermost loop walks one row of `b` and
  one row of `out`, both contiguous, so LLVM turns it into AVX2 SIMD code.
* `np.matmul`: OpenBLAS, whose hand-written micro-kernels keep a tile of `out`
  in registers, pack `a` and `b` into cache-sized panels and use FMA.

`matmul` and `bmm` (what the "numba" backend exports) pick one by shape.

Why almost everything goes to BLAS. Measured with `python benchmarks/kernels.py
--sections routing --clock cpu` on this project's machine (AMD EPYC, 2 cores,
AVX2, OpenBLAS 0.3.31 Haswell kernels), float32, 1 BLAS thread, median of 9;
"loops" includes the copy that makes a transposed view contiguous:

    product                                   BLAS       loops     BLAS faster by
    linear (1024,128) @ (128,512)             2.5 ms     6.3 ms    2.5x
    grad   (128,1024) @ (1024,512)   x.T@dy   1.8 ms     6.0 ms    3.4x
    linear (1024,128) @ (128,4000)             19 ms      64 ms    3.3x
    grad   (128,1024) @ (1024,4000)            17 ms     254 ms     15x
    linear (2048,256) @ (256,1024)             16 ms      47 ms    3.0x
    attn   G=256 (16,32) @ (32,16)            191 us    1200 us    6.3x
    attn   G=256 (16,16) @ (16,32)            216 us     349 us    1.6x
    attn   G=256 (32,32) @ (32,32)            339 us    1170 us    3.5x
    attn   G=512 (8,16) @ (16,8)              148 us     246 us    1.7x
    tiny   (8,8) @ (8,8)                      1.5 us     1.4 us    tie (call overhead)
    tiny   G=64 (6,6) @ (6,6)                  10 us      15 us    1.4x
    tiny   G=64 (4,4) @ (4,4)                  12 us     3.7 us    0.3x: loops win

* Linear layers: OpenBLAS runs at 55-75 GFLOP/s on one core, the loops at
  5-22. A second BLAS thread can only widen that gap for these big products
  (OpenBLAS threads a GEMM only above ~64^3 multiply-adds); jitted code stays
  single-threaded by project policy.
* Attention products (T, S in 8..32, D in 16..32): BLAS still wins 1.6-6x, and
  a second thread changes nothing (each matrix is far below the threading
  threshold). LLVM vectorises the j loop 8 floats wide and unrolls it 4 times,
  so rows shorter than 32 run mostly in the scalar remainder loop, and out[i, :]
  goes through memory once per k; np.matmul's cost per matrix (~0.2 us) is
  small next to that.
* Only matrices of at most LOOPS_MAX_MACS = 64 multiply-adds, where the fixed
  cost of a NumPy/BLAS call dominates, are faster in the loops. No transformer
  shape in this project is that small, so in practice every product goes to
  BLAS; the loops stay as the readable reference (and serve toy shapes).
Inputs the loops do not handle (mixed or non-float dtypes, other ranks) also go
to np.matmul, so the router then returns exactly what the NumPy twin returns.
"""
import numpy as np
from numba import njit

# A product whose matrices have at most this many multiply-adds each (M*K*N) runs
# in the jitted loops, anything larger in OpenBLAS (see the table above: at 4x4x4
# the loops win, at 6x6x6 and up BLAS is as fast or faster).
LOOPS_MAX_MACS = 64

_LOOP_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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


def _loops_can_do(a, b, ndim):
    """True when a and b are ndim-dimensional float32 or float64 arrays of one dtype."""
    return a.ndim == ndim and b.ndim == ndim and a.dtype == b.dtype and a.dtype in _LOOP_DTYPES


def matmul(a, b):
    """Plain matrix product, routed to OpenBLAS or the jitted loops by size.

    Shapes: a (M,K), b (K,N) -> (M,N)
    """
    if _loops_can_do(a, b, 2) and a.shape[1] == b.shape[0]:
        M, K = a.shape
        N = b.shape[1]
        if M * K * N <= LOOPS_MAX_MACS:
            # transposed views (x.T @ dy) are copied: only 'C' layouts get compiled
            return matmul_loops(np.ascontiguousarray(a), np.ascontiguousarray(b))
    return a @ b  # (M,K) @ (K,N) -> (M,N)


def bmm(a, b):
    """Batched matrix product, routed to OpenBLAS or the jitted loops by size.

    Shapes: a (G,M,K), b (G,K,N) -> (G,M,N)
    """
    if _loops_can_do(a, b, 3) and a.shape[0] == b.shape[0] and a.shape[2] == b.shape[1]:
        G, M, K = a.shape
        N = b.shape[2]
        if M * K * N <= LOOPS_MAX_MACS:
            # .transpose(0,2,1) views are copied: only 'C' layouts get compiled
            return bmm_loops(np.ascontiguousarray(a), np.ascontiguousarray(b))
    return np.matmul(a, b)  # (G,M,K) @ (G,K,N) -> (G,M,N)
