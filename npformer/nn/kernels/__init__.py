"""The hot core: small array kernels, each in two versions.

Every kernel exists as a plain NumPy function (`*_np.py`, the readable ground
truth) and as a Numba `@njit(cache=True)` function with the same signature
(`*_nb.py`). This package takes arrays and ints only and imports nothing else
from npformer.

The backend is chosen once, when npformer is imported, by the environment
variable NPFORMER_BACKEND: "numba" (the default) or "numpy". The imports below
are the whole selection, so go-to-definition on `kernels.softmax_forward` leads
to both versions. To switch, set the variable and start a new process (or
restart the notebook kernel). Tests compare the two side by side through
`implementations(name)`.

Kernel list (see each module for shapes):
  matmul, bmm                                     matmul_np / matmul_nb
  softmax_forward, softmax_backward               softmax_np / softmax_nb
  layernorm_forward, layernorm_backward           layernorm_np / layernorm_nb
  cross_entropy_forward_backward                  cross_entropy_np / cross_entropy_nb
  relu_forward, relu_backward, gelu_forward, gelu_backward   activation_np / activation_nb
  bias_relu_forward, bias_relu_backward (fused with the bias)  activation_np / activation_nb
  embedding_backward                              embedding_np / embedding_nb
  exp (the vectorisable float32 exp inside softmax, loss, GELU)   exp_np / exp_nb
  dropout (counter-based mask: regenerated, never stored)        dropout_np / dropout_nb
"""
import os

from .numba_cache import ensure_writable_cache

ensure_writable_cache()  # before the first @njit(cache=True) below (numba_cache.py)

from . import (  # noqa: E402
    activation_nb,
    activation_np,
    cross_entropy_nb,
    cross_entropy_np,
    dropout_nb,
    dropout_np,
    embedding_nb,
    embedding_np,
    exp_nb,
    exp_np,
    layernorm_nb,
    layernorm_np,
    matmul_nb,
    matmul_np,
    softmax_nb,
    softmax_np,
)

BACKENDS = ("numba", "numpy")
backend = os.environ.get("NPFORMER_BACKEND", "numba").strip().lower() or "numba"

if backend == "numba":
    from .activation_nb import (
        bias_relu_backward,
        bias_relu_forward,
        gelu_backward,
        gelu_forward,
        relu_backward,
        relu_forward,
    )
    from .cross_entropy_nb import cross_entropy_forward_backward
    from .dropout_nb import dropout
    from .embedding_nb import embedding_backward
    from .exp_nb import exp
    from .layernorm_nb import layernorm_backward, layernorm_forward
    from .matmul_nb import bmm, matmul
    from .softmax_nb import softmax_backward, softmax_forward
elif backend == "numpy":
    from .activation_np import (
        bias_relu_backward,
        bias_relu_forward,
        gelu_backward,
        gelu_forward,
        relu_backward,
        relu_forward,
    )
    from .cross_entropy_np import cross_entropy_forward_backward
    from .dropout_np import dropout
    from .embedding_np import embedding_backward
    from .exp_np import exp
    from .layernorm_np import layernorm_backward, layernorm_forward
    from .matmul_np import bmm, matmul
    from .softmax_np import softmax_backward, softmax_forward
else:
    raise ValueError(f"unknown kernel backend {backend!r}; choose one of {', '.join(BACKENDS)} "
                     "(environment variable NPFORMER_BACKEND)")

KERNEL_NAMES = (
    "matmul", "bmm",
    "softmax_forward", "softmax_backward",
    "layernorm_forward", "layernorm_backward",
    "cross_entropy_forward_backward",
    "relu_forward", "relu_backward", "gelu_forward", "gelu_backward",
    "bias_relu_forward", "bias_relu_backward",
    "embedding_backward",
    "exp",
    "dropout",
)
_MODULES = {
    "numba": (matmul_nb, softmax_nb, layernorm_nb, cross_entropy_nb, activation_nb, embedding_nb,
              exp_nb, dropout_nb),
    "numpy": (matmul_np, softmax_np, layernorm_np, cross_entropy_np, activation_np, embedding_np,
              exp_np, dropout_np),
}


def implementations(name):
    """{kernel name: function} of one backend, whichever is active (for tests and benchmarks)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return {kernel: getattr(module, kernel)
            for module in _MODULES[name] for kernel in KERNEL_NAMES if hasattr(module, kernel)}
