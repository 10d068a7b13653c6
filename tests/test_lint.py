"""The code base passes the linter (ruff, configured in pyproject.toml)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    pytest.importorskip("ruff", reason="ruff is in the test extra: pip install -e '.[test]'")
    cmd = [sys.executable, "-m", "ruff", "check", "npformer", "tests", "benchmarks"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"ruff found problems:\n{result.stdout}{result.stderr}"
