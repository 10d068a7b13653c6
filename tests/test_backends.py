"""The engine gives the same answers with every kernel backend.

Runs the kernel, layer, tape and model tests again in fresh interpreters:
once with the NumPy twins selected (NPFORMER_BACKEND=numpy) and once with
Numba's JIT disabled (NUMBA_DISABLE_JIT=1: the jitted kernels execute as plain
Python, which is how you debug them). The whole-model finite-difference check
is left out of the NUMBA_DISABLE_JIT run only for time (pure-Python loops);
run `NUMBA_DISABLE_JIT=1 python -m pytest` by hand for everything.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CORE = ["test_kernels.py", "test_gradcheck.py", "test_tape.py", "test_model.py"]

pytestmark = pytest.mark.skipif(os.environ.get("NPFORMER_BACKEND_RUN") == "1",
                                reason="already inside a backend run")


def _run(env_changes, extra):
    env = {**os.environ, **env_changes, "NPFORMER_BACKEND_RUN": "1"}
    files = [str(HERE / f) for f in CORE if (HERE / f).exists()]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, *files]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    tail = "\n".join(result.stdout.splitlines()[-25:])
    assert result.returncode == 0, f"{env_changes}: pytest failed\n{tail}\n{result.stderr[-2000:]}"
    assert " passed" in tail


def test_suite_core_with_numpy_backend():
    _run({"NPFORMER_BACKEND": "numpy"}, [])


def test_suite_core_with_jit_disabled():
    _run({"NUMBA_DISABLE_JIT": "1"}, ["-k", "not whole_model"])
