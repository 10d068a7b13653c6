"""BLAS thread control without extra dependencies.

npformer's policy: the jitted kernels are single-threaded, and BLAS (OpenBLAS,
used by NumPy for the big matrix products) gets the cores. On a small machine
that is also busy with other work, a multi-threaded OpenBLAS can be many times
SLOWER than a single thread (its threads spin-wait for each other), and small
transformer matrices gain little from a second thread anyway; measured numbers
are in docs/performance.md. `set_blas_threads(n)` changes the number of threads
of every OpenBLAS library loaded in this process (NumPy's bundled one included)
via its C API, the same call threadpoolctl makes. Linux only; elsewhere it
does nothing and says so.
"""
import ctypes
import os

_SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads",
            "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_")
_GETTERS = ("openblas_get_num_threads", "scipy_openblas_get_num_threads",
            "scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_")


def _openblas_libraries():
    """Paths of the OpenBLAS shared libraries mapped into this process."""
    import numpy  # noqa: F401  (make sure NumPy's BLAS is loaded)

    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if os.path.exists(p))


def _call(names, *args):
    results = []
    for path in _openblas_libraries():
        lib = ctypes.CDLL(path)
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                results.append(fn(*args))
                break
    return results


def set_blas_threads(n):
    """Use n OpenBLAS threads from now on; returns False if no OpenBLAS was found."""
    if n < 1:
        raise ValueError(f"threads={n}: must be >= 1")
    return bool(_call(_SETTERS, ctypes.c_int(int(n))))


def get_blas_threads():
    """The current OpenBLAS thread count (None if no OpenBLAS is loaded)."""
    found = _call(_GETTERS)
    return found[0] if found else None
