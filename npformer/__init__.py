"""npformer: an educational encoder-decoder transformer in NumPy.

Every layer has a hand-written forward and backward pass; a small tape replays
the backward passes in reverse; a handful of Numba kernels make it fast.
"""
__version__ = "0.2.0"
