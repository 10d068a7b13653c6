"""Suite-wide settings.

BLAS gets one thread: the suite's matrices are small, and a multi-threaded
OpenBLAS on a busy 2-core machine can be many times slower (docs/performance.md).
The tests import from tests/helpers.py, so this folder goes on sys.path.
"""
import sys
from pathlib import Path

import pytest

from npformer.nn.threads import set_blas_threads

sys.path.insert(0, str(Path(__file__).parent))
set_blas_threads(1)


# ------------------------------------------------------------------ npformer explore
# Three tiny models, trained in a few seconds once per session (under pytest-xdist, once per
# worker that needs them; they are not good at anything): a BPE translator, a language
# model and a classifier fine-tuned from it. tests/test_explore.py and
# tests/test_explore_browser.py look at them.
# One validation, at the last step: with NUMBA_DISABLE_JIT=1 each one takes minutes.
TINY = ["--d-model", "16", "--n-heads", "2", "--d-ff", "32", "--n-layers", "1",
        "--max-len", "24", "--max-tokens", "512", "--max-steps", "4", "--eval-every", "4",
        "--warmup-steps", "1", "--log-every", "2", "--max-minutes", "0"]


@pytest.fixture(scope="session")
def explore_runs(tmp_path_factory):
    """{"translator": run dir, "lm": run dir, "classifier": run dir} of tiny trained models."""
    from npformer.cli import main
    from npformer.data import make_toy_corpus, save_tsv

    root = tmp_path_factory.mktemp("explore")
    runs = {name: root / name for name in ("translator", "lm", "classifier")}
    pairs = root / "toy.tsv"  # 700 toy pairs: the whole corpus takes seconds to make and encode
    save_tsv([p for split in make_toy_corpus(600, 50, 50).values() for p in split], pairs)
    commands = [["train", *TINY, "--data", str(pairs), "--tokenizer", "bpe", "--vocab-size",
                 "300", "--eval-sentences", "4", "--out-dir", str(runs["translator"])],
                ["pretrain", *TINY, "--data-size", "1500", "--out-dir", str(runs["lm"])],
                ["finetune", *TINY, "--from", str(runs["lm"] / "best.npz"), "--task",
                 "acceptability", "--data-size", "64", "--out-dir", str(runs["classifier"])]]
    for argv in commands:
        assert main(argv) == 0, f"npformer {' '.join(argv)} failed"
    return runs
