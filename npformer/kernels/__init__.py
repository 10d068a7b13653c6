"""The hot core: small array kernels, each in two versions.

Every kernel exists as a plain NumPy function (`*_np.py`, the readable ground
truth) and as a Numba `@njit(cache=True)` function with the same signature
(`*_nb.py`). This package takes arrays and ints only and imports nothing else
from npformer.

The backend is chosen by the environment variable NPFORMER_BACKEND
("numba", the default, or "numpy") or at run time with `set_backend(name)`.
Callers always go through this module (`kernels.softmax_forward(...)`), so a
switch takes effect immediately.

Kernel list (see each module for shapes):
  matmul, bmm                                     matmul_np / matmul_nb
  softmax_forward, softmax_backward               softmax_np / softmax_nb
  layernorm_forward, layernorm_backward           layernorm_np / layernorm_nb
  cross_entropy_forward_backward                  cross_entropy_np / cross_entropy_nb
  relu_forward, relu_backward, gelu_forward, gelu_backward   activation_np / activation_nb
  embedding_backward                              embedding_np / embedding_nb
"""
import importlib
import os

KERNEL_NAMES = (
    "matmul",
    "bmm",
    "softmax_forward",
    "softmax_backward",
    "layernorm_forward",
    "layernorm_backward",
    "cross_entropy_forward_backward",
    "relu_forward",
    "relu_backward",
    "gelu_forward",
    "gelu_backward",
    "embedding_backward",
)
_MODULES = ("matmul", "softmax", "layernorm", "cross_entropy", "activation", "embedding")
BACKENDS = ("numba", "numpy")
_SUFFIX = {"numba": "_nb", "numpy": "_np"}

backend = None  # name of the active backend, set by set_backend below


def implementations(name):
    """Return {kernel name: function} for one backend, without activating it."""
    if name not in BACKENDS:
        raise ValueError(
            f"unknown kernel backend {name!r}; choose one of {', '.join(BACKENDS)} "
            "(environment variable NPFORMER_BACKEND)"
        )
    table = {}
    for module_name in _MODULES:
        module = importlib.import_module(f"{__name__}.{module_name}{_SUFFIX[name]}")
        for kernel in KERNEL_NAMES:
            if hasattr(module, kernel):
                table[kernel] = getattr(module, kernel)
    missing = set(KERNEL_NAMES) - set(table)
    if missing:
        raise ImportError(f"backend {name!r} lacks kernels: {sorted(missing)}")
    return table


def set_backend(name):
    """Make `name` ("numba" or "numpy") the backend used by every layer."""
    global backend
    globals().update(implementations(name))
    backend = name


set_backend(os.environ.get("NPFORMER_BACKEND", "numba").strip().lower() or "numba")
