"""Suite-wide settings.

BLAS gets one thread: the suite's matrices are small, and a multi-threaded
OpenBLAS on a busy 2-core machine can be many times slower (docs/performance.md).
The tests import from tests/helpers.py, so this folder goes on sys.path.
"""
import sys
from pathlib import Path

from npformer.nn.threads import set_blas_threads

sys.path.insert(0, str(Path(__file__).parent))
set_blas_threads(1)
