"""Every notebook's stored outputs hold on another CPU, simulated (tests/simulated_cpu.py).

The notebooks run again in fresh kernels with the NumPy twins selected and NumPy's SIMD
paths off, and their outputs are compared with the stored ones exactly as on this machine
(tests/test_notebooks.py). Its own file so that a run with two workers (pytest -n 2)
can put it beside the rest.
"""
import os

import pytest
from simulated_cpu import simulated_env
from test_backends import run_pytest

pytestmark = pytest.mark.skipif(os.environ.get("NPFORMER_BACKEND_RUN") == "1",
                                reason="already inside a backend run")


def test_notebooks_on_a_simulated_cpu():
    run_pytest(simulated_env(), ["-k", "notebook_runs"], ["test_notebooks.py"])
