"""Regression tests for the reliability bugs of issue 8, and the promises around them.

Resume takes the saved run's data and configuration, a mid-step interrupt resumes
exactly, user errors are one line with exit code 2, nothing already saved is damaged.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import npformer.training.loop
from npformer.training.checkpoint import load_checkpoint
from npformer.cli import main
from npformer.nn.config import ConfigError
from npformer.training.config import TrainConfig
from npformer.data import make_reverse_task, save_tsv
from npformer.nn.tape import Tape
from npformer.training.loop import train

SMALL = dict(d_model=16, n_heads=2, d_ff=32, n_layers=1, max_len=16, max_tokens=256,
             eval_sentences=4, log_every=1, max_minutes=0.0, warmup_steps=1, lr=3e-3)
FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]


def quiet(line):
    pass


def without_timings(history):
    return [{k: v for k, v in h.items() if k not in ("tokens_per_s", "elapsed_s")}
            for h in history]


def cli(*args):
    """Run the CLI in a subprocess, as a user does: (exit code, stdout, stderr)."""
    r = subprocess.run([sys.executable, "-m", "npformer", *args], capture_output=True,
                       text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


def assert_user_error(code, err, needle):
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err, err


def test_resume_trains_on_the_saved_runs_user_file(tmp_path, capsys):
    """Bug 1: resuming a run on a user file used to fall back to the toy corpus."""
    splits = make_reverse_task(seed=0)
    data = tmp_path / "reverse.tsv"
    save_tsv(splits["train"][:300], data)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), *FLAGS, "--max-steps", "4", "--eval-every", "2",
                 "--out-dir", str(out)]) == 0
    assert main(["train", "--resume", "--out-dir", str(out), "--max-steps", "6"]) == 0
    err = capsys.readouterr().err
    resumed_part = err[err.index("resuming at step 4"):] if "resuming at step 4" in err else ""
    assert resumed_part, err
    data_lines = [line for line in err.splitlines() if line.startswith("data:")]
    assert len(data_lines) == 2 and all(str(data) in line for line in data_lines), data_lines
    cfg = TrainConfig.from_dict(load_checkpoint(out / "last.npz").train_config)
    assert cfg.data == str(data) and cfg.max_steps == 6
    steps = [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()
             if json.loads(x)["type"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_refuses_changed_data_and_changed_settings(tmp_path):
    splits = make_reverse_task(seed=0)
    data = tmp_path / "reverse.tsv"
    save_tsv(splits["train"][:200], data)
    out = tmp_path / "run"
    train(TrainConfig(data=str(data), **SMALL, max_steps=2, eval_every=2, out_dir=str(out)),
          log=quiet)
    before = (out / "last.npz").read_bytes()
    code, _, err = cli("train", "--resume", "--out-dir", str(out), "--lr", "0.1")
    assert_user_error(code, err, "cannot change lr")
    code, _, err = cli("train", "--resume", "--preset", "tsv", "--out-dir", str(out))
    assert_user_error(code, err, "--preset cannot be combined with --resume")
    save_tsv(splits["train"][:199], data)  # the file changed under the run
    code, _, err = cli("train", "--resume", "--out-dir", str(out), "--max-steps", "4")
    assert_user_error(code, err, "training data changed")
    assert (out / "last.npz").read_bytes() == before  # refused before anything was written


@pytest.mark.parametrize("task,data", [("translate", dict(data="copy")),
                                       ("lm", dict(data="toy", data_size=3000)),
                                       ("classify", dict(data="acceptability", data_size=64))])
def test_interrupt_inside_a_step_resumes_exactly(tmp_path, monkeypatch, task, data):
    """Bug 2: Ctrl-C in the middle of a step used to save a random state already advanced.

    The same loop trains all three tasks: each resumes to the same history, bit for bit.
    """
    cfg = TrainConfig(task=task, **data, **{**SMALL, "dropout": 0.3}, max_steps=8,
                      eval_every=4, out_dir=str(tmp_path / "a"))
    straight = train(cfg, log=quiet)
    calls = {"n": 0}
    original = Tape.backward

    def interrupt_in_step_6(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # dropout masks of step 6 are drawn, the update is not done
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Tape, "backward", interrupt_in_step_6)
    cfg_b = cfg.replace(out_dir=str(tmp_path / "b"))
    with pytest.raises(KeyboardInterrupt):
        train(cfg_b, log=quiet)
    monkeypatch.setattr(Tape, "backward", original)
    # the half-done step was not saved; the run resumes from the last consistent state
    assert load_checkpoint(tmp_path / "b" / "last.npz").state["step"] == 4
    resumed = train(cfg_b, resume=True, log=quiet)
    assert without_timings(resumed) == without_timings(straight)
    assert [h["step"] for h in resumed if h["type"] == "train"] == list(range(1, 9))
    a, b = (load_checkpoint(tmp_path / d / "last.npz").model.params for d in "ab")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_resume_without_a_checkpoint_is_one_line(tmp_path):
    """Bug 3: used to print a traceback."""
    code, _, err = cli("train", "--resume", "--out-dir", str(tmp_path / "nothing"))
    assert_user_error(code, err, "nothing to resume")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("rel") / "run"
    train(TrainConfig(data="copy", **SMALL, max_steps=2, eval_every=2, out_dir=str(out)),
          log=quiet)
    return out / "best.npz"


def test_eval_json_into_a_new_directory_and_into_an_impossible_place(trained, tmp_path):
    """Bug 4: --json into a missing directory used to score everything, then die."""
    target = tmp_path / "new" / "dir" / "scores.json"
    code, out, err = cli("eval", "--model", str(trained), "--limit", "3", "--json", str(target))
    assert code == 0, err
    assert json.loads(target.read_text())["n"] == 3
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, out, err = cli("eval", "--model", str(trained), "--json", str(blocker / "x.json"))
    assert_user_error(code, err, "--json")
    assert "BLEU" not in out  # refused before any decoding


def test_output_directory_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = cli("train", "--preset", "copy", "--out-dir", str(blocker / "run"))
    assert_user_error(code, err, "cannot write there")


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    cfg = TrainConfig(data="copy", **SMALL, max_steps=4, eval_every=2, out_dir=str(tmp_path))
    train(cfg.replace(max_steps=2), log=quiet)
    before = (tmp_path / "last.npz").read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(npformer.training.checkpoint.os, "fsync", disk_full)
    with pytest.raises(npformer.training.checkpoint.CheckpointError, match="No space left"):
        train(cfg, resume=True, log=quiet)
    monkeypatch.undo()
    assert (tmp_path / "last.npz").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]
    history = train(cfg, resume=True, log=quiet)  # and the run goes on once there is space
    assert history[-1]["step"] == 4


def test_same_seed_same_losses_bit_for_bit(tmp_path):
    cfg = TrainConfig(data="copy", **{**SMALL, "dropout": 0.2}, max_steps=5, eval_every=5)
    a = train(cfg.replace(out_dir=str(tmp_path / "a")), log=quiet)
    b = train(cfg.replace(out_dir=str(tmp_path / "b")), log=quiet)
    assert without_timings(a) == without_timings(b)
    c = train(cfg.replace(out_dir=str(tmp_path / "c"), seed=1), log=quiet)
    assert without_timings(c) != without_timings(a)  # the seed matters


def test_values_that_cannot_mean_anything_are_refused_at_config_time():
    for bad in (dict(lr=float("nan")), dict(lr=float("inf")), dict(max_minutes=float("nan")),
                dict(dropout=1.0), dict(label_smoothing=-0.1), dict(d_model=0),
                dict(max_tokens=-5), dict(seed=-1), dict(d_model=True), dict(n_layers=10**6)):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            TrainConfig(**bad)


def test_checkpoint_from_before_qkv_packing_loads_and_resumes(tmp_path):
    """A checkpoint in the legacy layout (separate W_q/W_k/W_v) loads, moments included."""
    cfg = TrainConfig(data="copy", **SMALL, max_steps=2, eval_every=2, out_dir=str(tmp_path))
    train(cfg, log=quiet)
    path = tmp_path / "last.npz"
    with np.load(path, allow_pickle=False) as npz:
        entries = {k: npz[k] for k in npz.files}
    legacy = {}
    for name, value in entries.items():  # unpack every W_qkv / W_kv into the old keys
        stem, _, last = name.rpartition(".")
        if last in ("W_qkv", "b_qkv", "W_kv", "b_kv"):
            kind, parts = last.split("_")
            for part, piece in zip(parts, np.split(value, len(parts), axis=-1)):
                legacy[f"{stem}.{kind}_{part}"] = piece
        else:
            legacy[name] = value
    np.savez(path, **legacy)
    ckpt = load_checkpoint(path)
    assert "encoder.0.self_attn.W_qkv" in ckpt.model.params
    assert "encoder.0.self_attn.W_qkv" in ckpt.optimizer_state["exp_avg"]
    assert train(cfg.replace(max_steps=3), resume=True, log=quiet)[-1]["step"] == 3


def test_an_unknown_kernel_backend_in_the_environment_is_one_line(tmp_path):
    env = {**os.environ, "NPFORMER_BACKEND": "fortran"}
    r = subprocess.run([sys.executable, "-m", "npformer", "data", "--out-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert_user_error(r.returncode, r.stderr, "NPFORMER_BACKEND")


# The NumPy and Numba kernels compute the same functions with float32 operations in
# another order (fastmath exp, fused loops): per step the losses differ by a few
# roundings, ~1e-7 relative (measured 7.6e-8 over 20 steps); BACKENDS_RTOL leaves room
# for the differences Adam carries forward, and is far below any real disagreement.
BACKENDS_RTOL = 1e-5


def test_numpy_and_numba_backends_train_alike(tmp_path):
    cfg = TrainConfig(data="copy", **{**SMALL, "dropout": 0.1}, max_steps=8, eval_every=4)
    runs = {}
    for backend in ("numba", "numpy"):
        out = tmp_path / backend
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in cfg.to_dict().items()
                 if k != "out_dir" and v != getattr(TrainConfig(), k)]  # what differs
        r = subprocess.run([sys.executable, "-m", "npformer", "train", *flags, "--out-dir",
                            str(out)], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NPFORMER_BACKEND": backend})
        assert r.returncode == 0, r.stderr[-2000:]
        runs[backend] = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    for a, b in zip(runs["numba"], runs["numpy"], strict=True):
        if a["type"] == "data":  # the corpus facts: no arithmetic, so equal
            assert a == b
            continue
        key = "loss" if a["type"] == "train" else "valid_loss"
        assert a[key] == pytest.approx(b[key], rel=BACKENDS_RTOL), (a, b)
