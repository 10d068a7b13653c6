"""Data-parallel training over MPI with 2 processes.

Same losses as one process, identical copies, resume with another number of
processes, a dead rank fails the job.

Equality with one process: with dropout off, a 2-rank step computes the same
global-batch gradient as one process, but as a sum of two half-batch gradients,
so the float32 additions happen in another order (and each half is padded to its
own length, which changes BLAS blocking). Each step therefore differs by a few
float32 roundings (~1e-7 relative), and Adam carries the differences forward:
over the few steps here the losses agree to LOSS_RTOL = 1e-5 (measured: ~3e-7
after 40 steps on the copy task); bitwise equality is neither expected nor needed.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from npformer.training.checkpoint import load_checkpoint
from npformer.cli import main
from npformer.tasks import PRESETS
from npformer.training.config import TrainConfig
from npformer.training.distributed import GradientSync, SingleProcess, flat_gradients, shard
from npformer.models.transformer import Transformer
from npformer.nn.config import ModelConfig
from npformer.training.loop import train

LOSS_RTOL = 1e-5
MPIEXEC = shutil.which("mpiexec")
DRIVER = Path(__file__).with_name("mpi_driver.py")
RUN = dict(data="copy", d_model=16, n_heads=2, d_ff=32, n_layers=1, max_len=12,
           max_tokens=256, max_steps=12, eval_every=6, eval_sentences=4, log_every=1,
           max_minutes=0.0, warmup_steps=2, lr=3e-3, dropout=0.0, schedule="constant")
FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in RUN.items()]

needs_mpi = pytest.mark.skipif(
    MPIEXEC is None and os.environ.get("CI") != "true",
    reason="mpiexec not installed (pip install -e '.[mpi]'); CI installs it and fails without")


def mpi(n, *args, driver_spec=None, timeout=120):
    assert MPIEXEC, "mpiexec is missing: the test extra installs mpi4py and mpich"
    program = [str(DRIVER), json.dumps(driver_spec)] if driver_spec else ["-m", "npformer"]
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, *program, *args],
                          capture_output=True, text=True, timeout=timeout)


def losses(history):
    return {(h["type"], h["step"]): h["loss" if h["type"] == "train" else "valid_loss"]
            for h in history if h["type"] != "data"}


def logged(out):
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def assert_same_losses(a, b):
    la, lb = losses(a), losses(b)
    assert sorted(la) == sorted(lb)
    for key in la:
        assert la[key] == pytest.approx(lb[key], rel=LOSS_RTOL), f"{key}: {la[key]} vs {lb[key]}"


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    return train(TrainConfig(**RUN, out_dir=str(out)), log=lambda line: None)


def test_shards_cover_the_global_batch_once():
    batch = list(range(7))
    parts = [shard(batch, r, 3) for r in range(3)]
    assert sorted(i for p in parts for i in p) == batch
    assert shard([5], 1, 2) == []  # a rank may get nothing


def test_flat_gradients_are_views_the_tape_accumulates_into():
    model = Transformer(ModelConfig(src_vocab_size=11, tgt_vocab_size=11, d_model=8,
                                    n_heads=2, d_ff=16, n_encoder_layers=1,
                                    n_decoder_layers=1))
    flat = flat_gradients(model)
    assert flat.size == model.n_params
    model.grads["out.b"] += 1.0
    assert flat.sum() == model.grads["out.b"].size  # written through the view
    sync = GradientSync(SingleProcess(), model)
    assert sync(2.5, 10) == pytest.approx(2.5) and sync.n_tokens == 10


@needs_mpi
def test_two_processes_match_one_process(tmp_path, single):
    out = tmp_path / "two"
    result = mpi(2, "train", *FLAGS, "--out-dir", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data parallel: 2 processes" in result.stderr
    assert result.stderr.count("valid step 6") == 1  # rank 0 alone reports
    assert_same_losses(logged(out), single)


LM_RUN = {**RUN, "data": "toy", "data_size": 3000, "max_len": 16}


@needs_mpi
def test_two_processes_match_one_process_for_a_language_model(tmp_path):
    """The LM task goes through the same data-parallel step: the same losses as one process."""
    cfg = TrainConfig(**{**PRESETS["lm"], **LM_RUN, "out_dir": str(tmp_path / "one")})
    single_lm = train(cfg, log=lambda line: None)  # the same config as `npformer pretrain`
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in LM_RUN.items() if k != "eval_sentences"]
    result = mpi(2, "pretrain", *flags, "--out-dir", str(tmp_path / "two"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data parallel: 2 processes" in result.stderr
    assert_same_losses(logged(tmp_path / "two"), single_lm)
    assert len(losses(single_lm)) == 12 + 2  # every train step and both validations compared


@needs_mpi
def test_resume_with_another_number_of_processes(tmp_path, single):
    out = tmp_path / "run"
    first = mpi(2, "train", *FLAGS, "--max-steps", "6", "--out-dir", str(out))
    assert first.returncode == 0, first.stderr[-3000:]
    # one process continues what two started, then two continue what one did
    assert main(["train", "--resume", "--out-dir", str(out), "--max-steps", "9"]) == 0
    again = mpi(2, "train", "--resume", "--out-dir", str(out), "--max-steps", "12")
    assert again.returncode == 0, again.stderr[-3000:]
    history = logged(out)
    assert [h["step"] for h in history if h["type"] == "train"] == list(range(1, 13))
    # a constant learning rate: stopping at 6 and 9 changes nothing but the extra validation
    assert_same_losses([h for h in history if (h["type"], h["step"]) != ("valid", 9)], single)


@needs_mpi
def test_parameters_that_drift_apart_stop_the_job(tmp_path):
    out = tmp_path / "drift"
    result = mpi(2, "train", *FLAGS, "--out-dir", str(out),
                 driver_spec={"rank": 1, "fault": "drift", "call": 3})
    assert result.returncode != 0
    assert "differ between ranks" in result.stderr, result.stderr[-3000:]


@needs_mpi
def test_a_rank_that_dies_fails_the_job_instead_of_hanging(tmp_path):
    out = tmp_path / "dead"
    result = mpi(2, "train", *FLAGS, "--out-dir", str(out), timeout=90,
                 driver_spec={"rank": 1, "fault": "die", "call": 3})
    assert result.returncode != 0
    said = result.stdout + result.stderr  # MPICH reports the dead rank on stdout
    assert "BAD TERMINATION" in said, said[-3000:]
    if (out / "last.npz").exists():  # whatever was saved before is a whole checkpoint
        load_checkpoint(out / "last.npz")


def test_workers_without_mpi4py_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py -> ImportError
    assert main(["train", "--workers", "2", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and '.[mpi]' in err, err
