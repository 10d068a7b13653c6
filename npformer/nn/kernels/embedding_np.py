"""NumPy twin of the embedding gradient scatter.

Shapes: N token positions, V vocabulary, C features.
"""
import numpy as np


def embedding_backward(dW, ids, dy):
    """Accumulate rows of dy into dW at the token ids (in place, returns dW).

    A token that appears twice receives both contributions, which is why this is
    np.add.at and not dW[ids] += dy (the latter keeps only one of them).
    Shapes: dW (V,C), ids (N,) int, dy (N,C) -> dW (V,C)
    """
    np.add.at(dW, ids, dy)  # (V,C) += scatter of (N,C)
    return dW
