"""Jitted embedding gradient scatter (twin: embedding_np.py).

Shapes: N token positions, V vocabulary, C features.
    dW[ids[n], :] += dy[n, :]   for n = 0 .. N-1
A plain loop over rows: a token that appears twice is simply visited twice, so it
receives both contributions (the job np.add.at does in the twin).
"""
import numpy as np
from numba import njit


@njit(cache=True)
def _scatter_add_rows(dW, ids, dy):
    """Shapes: dW (V,C) C-contiguous, updated in place; ids (N,) int64; dy (N,C)"""
    V, C = dW.shape
    for n in range(ids.shape[0]):
        token = ids[n]
        if token < 0 or token >= V:
            raise IndexError("embedding_backward: a token id is outside [0, V)")
        for j in range(C):
            dW[token, j] += dy[n, j]


def embedding_backward(dW, ids, dy):
    """Accumulate rows of dy into dW at the token ids (in place, returns dW).

    Shapes: dW (V,C), ids (N,) int, dy (N,C) -> dW (V,C)
    ids (B,T) with dy (B,T,C) are accepted too and flattened.
    """
    C = dW.shape[1]
    ids_flat = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)  # (...) -> (N,)
    dy_rows = np.ascontiguousarray(dy, dtype=dW.dtype).reshape(-1, C)  # (...,C) -> (N,C)
    if dy_rows.shape[0] != ids_flat.shape[0]:
        raise ValueError(f"dy {dy.shape} has not one row of {C} per id in ids {ids.shape}")
    if dW.flags.c_contiguous:
        _scatter_add_rows(dW, ids_flat, dy_rows)
    else:  # a strided dW: scatter into a contiguous copy, then write it back
        dW_work = np.ascontiguousarray(dW)
        _scatter_add_rows(dW_work, ids_flat, dy_rows)
        dW[...] = dW_work
    return dW
