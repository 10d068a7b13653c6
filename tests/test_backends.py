"""The engine gives the same answers with every kernel backend, and on another CPU.

Runs tests again in fresh interpreters:
* on another CPU, simulated (tests/simulated_cpu.py: the NumPy twins selected with
  NPFORMER_BACKEND=numpy and NumPy's runtime-dispatched SIMD paths turned off with
  NPY_DISABLE_CPU_FEATURES): the numeric tests (and, in test_notebooks_another_cpu.py,
  every notebook against its stored outputs). Their last digits differ from this
  machine's, as on a learner's laptop, so this proves that the comparisons carry the
  tolerance the arithmetic needs;
* with Numba's JIT disabled (NUMBA_DISABLE_JIT=1: the jitted kernels execute as plain
  Python, which is how you debug them): the kernel, layer, tape and model tests. The
  whole-model finite-difference check is left out only for time (pure-Python loops);
  run `NUMBA_DISABLE_JIT=1 python -m pytest` by hand for everything.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CORE = ["test_kernels.py", "test_gradcheck.py", "test_tape.py", "test_model.py"]
# what depends on the last digits of floats: kernels, layers, models, decoding, the
# optimizer, the PyTorch oracle (the notebooks' stored outputs: test_notebooks_another_cpu.py)
NUMERIC = CORE + ["test_output_loss.py", "test_decoding.py", "test_lm_models.py",
                  "test_optim.py", "test_torch_oracle.py", "test_overfit.py"]

pytestmark = pytest.mark.skipif(os.environ.get("NPFORMER_BACKEND_RUN") == "1",
                                reason="already inside a backend run")


def run_pytest(env_changes, extra, files=CORE):
    """pytest on `files` in a fresh interpreter with the environment changed; must pass."""
    env = {**os.environ, **env_changes, "NPFORMER_BACKEND_RUN": "1"}
    files = [str(HERE / f) for f in files if (HERE / f).exists()]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *extra,
           *files]  # -n 0: no workers of its own (the outer run may have two)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    tail = "\n".join(result.stdout.splitlines()[-25:])
    assert result.returncode == 0, f"{env_changes}: pytest failed\n{tail}\n{result.stderr[-2000:]}"
    assert " passed" in tail


def test_numeric_tests_on_a_simulated_cpu():
    """Another CPU: the numbers move (shown first), and every comparison still holds."""
    from simulated_cpu import fingerprints_differ, simulated_env

    moved = fingerprints_differ()
    assert moved, "the simulated CPU computes the same bits: the second pass would prove nothing"
    run_pytest(simulated_env(), [], NUMERIC)


def test_suite_core_with_jit_disabled():
    run_pytest({"NUMBA_DISABLE_JIT": "1"}, ["-k", "not whole_model"])
