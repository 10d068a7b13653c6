"""Fault injection: killed or interrupted training, resumed, ends as if never stopped.

Training is killed (SIGKILL) or interrupted (SIGINT, Ctrl-C) at seeded random
moments, then resumed; it must end exactly where an uninterrupted run ends.

Each campaign runs `npformer train` (or `pretrain`, `finetune`: every model kind)
in subprocesses (tests/fault_driver.py injects the faults from outside), restarting
after every fault: with --resume when a last.npz exists, from scratch otherwise, as
a user would (a killed run leaves its lock file: the next run takes it over). At
the end:
  - every training and validation record equals the uninterrupted run's, bit for
    bit (wall-clock fields aside), in log.jsonl as well as in the checkpoint;
  - the final parameters are identical;
  - no temporary file, and no lock file, is left in the run directory;
  - every fault really fired (the process died of it, or exited 130 after Ctrl-C).
"""
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npformer.training.checkpoint import load_checkpoint
from npformer.tasks import COMMAND_PRESETS, COMMAND_TASKS, PRESETS
from npformer.training.config import TrainConfig
from npformer.training.loop import train
from small_corpora import labelled, lm_text

DRIVER = Path(__file__).with_name("fault_driver.py")
RUN = dict(data="copy", d_model=16, n_heads=2, d_ff=32, n_layers=1, max_len=12,
           max_tokens=128, max_steps=18, eval_every=5, eval_sentences=4, log_every=1,
           max_minutes=0.0, warmup_steps=2, lr=3e-3, dropout=0.2)
LM_RUN = {k: v for k, v in RUN.items() if k != "eval_sentences"}
# (signal, place, times): every kind of fault the campaigns draw from
FAULTS = [("KILL", "backward", 1), ("KILL", "update", 1), ("KILL", "validate", 1),
          ("KILL", "fsync", 1), ("INT", "backward", 1), ("INT", "backward", 2),
          ("INT", "update", 1), ("INT", "validate", 1), ("INT", "validate", 2),
          ("INT", "fsync", 2)]


def without_timings(history):
    return [{k: v for k, v in h.items() if k not in ("tokens_per_s", "elapsed_s")}
            for h in history]


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    """Every model kind goes through the same campaign: {kind: (command, its run's fields)}.

    The LM and the classifier train on small files (tests/small_corpora.py).
    """
    data = tmp_path_factory.mktemp("data")
    return {"translator": ("train", RUN),
            "lm": ("pretrain", {**LM_RUN, "data": str(lm_text(data / "text.txt", 1500)),
                                "max_len": 16, "valid_frac": 0.1, "test_frac": 0.1}),
            "classifier": ("finetune", {**LM_RUN, "data": str(labelled(data / "l.tsv", 48)),
                                        "valid_frac": 0.2, "test_frac": 0.1})}


@pytest.fixture(scope="module")
def references(tmp_path_factory, kinds):
    """{kind: (history, final parameters)} of the uninterrupted run of each kind."""
    refs = {}
    for kind, (command, run) in kinds.items():
        out = tmp_path_factory.mktemp("reference")
        preset = PRESETS[COMMAND_PRESETS[command][0]]  # what the command starts from
        cfg = TrainConfig(**{**preset, **run, "task": COMMAND_TASKS[command],
                             "out_dir": str(out)})
        history = train(cfg, log=lambda line: None)
        refs[kind] = without_timings(history), load_checkpoint(out / "last.npz").model.params
    return refs


def run_with_fault(out, fault, command, run):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in run.items()]
    cmd = [sys.executable, str(DRIVER), json.dumps(fault), command, *flags, "--out-dir",
           str(out), "--overwrite"]  # a start killed in its first save may leave best.npz
    if (out / "last.npz").exists():  # a resumed run takes its configuration from the checkpoint
        cmd = [sys.executable, str(DRIVER), json.dumps(fault), command, "--out-dir", str(out),
               "--resume"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("kind,seed", [("translator", 0), ("translator", 1), ("lm", 3),
                                       ("classifier", 4)])
def test_killed_and_interrupted_runs_resume_to_the_same_result(tmp_path, kinds, references,
                                                               kind, seed):
    history, params = references[kind]
    rng = random.Random(seed)
    faults = rng.sample(FAULTS, 3)
    out = tmp_path / "run"
    for signal_name, where, times in faults:
        call = rng.randint(1, 2) if where in ("validate", "fsync") else rng.randint(1, 5)
        fault = {"signal": signal_name, "where": where, "call": call, "times": times}
        result = run_with_fault(out, fault, *kinds[kind])
        expected = -9 if signal_name == "KILL" else 130
        assert result.returncode == expected, (
            f"fault {fault} did not end the run as expected (exit {result.returncode}):\n"
            f"{result.stderr[-2000:]}")
        assert "Traceback" not in result.stderr, result.stderr
        if signal_name == "KILL":  # a killed run leaves its lock; the next run must not mind
            assert (out / ".lock").exists()
    final = run_with_fault(out, {"signal": "INT", "where": "backward", "call": 10 ** 9},
                           *kinds[kind])
    assert final.returncode == 0, final.stderr[-2000:]

    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert without_timings(logged) == history, f"log.jsonl differs after faults {faults}"
    ckpt = load_checkpoint(out / "last.npz")
    assert without_timings(ckpt.state["history"]) == history
    for key, value in params.items():
        assert np.array_equal(ckpt.model.params[key], value), f"{key} differs after {faults}"
    leftovers = [p.name for p in out.iterdir() if "tmp" in p.name or p.name.startswith(".")]
    assert leftovers == [], f"stray files after {faults}: {leftovers}"
