"""Which checkpoint is best.npz: the best_by rules, their default, and resume."""
import json

import numpy as np
import pytest

from npformer.training.checkpoint import load_checkpoint
from npformer.nn.config import ConfigError
from npformer.training.config import TrainConfig
from npformer.tasks import selection_score
from npformer.training.loop import train
from npformer.training.session import resume_config

SMALL = dict(data="copy", d_model=16, n_heads=2, d_ff=32, n_layers=1, max_len=16,
             max_tokens=256, max_steps=6, eval_every=2, eval_sentences=4, log_every=2,
             max_minutes=0.0, warmup_steps=1, lr=3e-3)


def quiet(line):
    pass


def test_each_rule_ranks_the_issues_two_validations():
    # issue #14: the earlier validation had the higher BLEU, the later one was far better
    earlier = {"valid_loss": 0.060, "bleu": 99.2, "exact_match": 0.865}
    later = {"valid_loss": 0.031, "bleu": 98.8, "exact_match": 0.950}

    def pick(rule):
        return max((earlier, later), key=lambda fields: selection_score(fields, rule))

    assert pick("bleu") is earlier  # the old rule
    assert pick("bleu_exact") is later and pick("exact_match") is later
    assert pick("valid_loss") is later
    assert selection_score(later, "bleu_exact") == pytest.approx((98.8 + 95.0) / 2)
    assert selection_score({"accuracy": 0.7}, "accuracy") == 0.7


def test_best_by_names_a_score_of_the_task():
    assert TrainConfig(best_by="exact_match").best_by == "exact_match"
    with pytest.raises(ConfigError, match="best_by"):
        TrainConfig(best_by="bleu", task="classify")
    with pytest.raises(ConfigError, match="best_by"):
        TrainConfig(best_by="perplexity")


def test_default_keeps_the_best_mean_of_bleu_and_exact_match(tmp_path):
    history = train(TrainConfig(**SMALL, out_dir=str(tmp_path)), log=quiet)
    valid = [h for h in history if h["type"] == "valid"]
    assert len(valid) == 3
    means = [(h["bleu"] + 100 * h["exact_match"]) / 2 for h in valid]
    best = valid[means.index(max(means))]  # the first of equals, as the trainer keeps it
    ckpt = load_checkpoint(tmp_path / "best.npz")
    assert ckpt.state["step"] == best["step"]
    assert ckpt.train_config["best_by"] == "bleu_exact"  # the default, named in the run
    assert ckpt.state["best_score"] == pytest.approx(max(means))


def test_valid_loss_rule_keeps_the_lowest_validation_loss(tmp_path):
    history = train(TrainConfig(**SMALL, best_by="valid_loss", out_dir=str(tmp_path)),
                    log=quiet)
    best = min((h for h in history if h["type"] == "valid"), key=lambda h: h["valid_loss"])
    ckpt = load_checkpoint(tmp_path / "best.npz")
    assert ckpt.state["step"] == best["step"]
    assert ckpt.state["best_score"] == -best["valid_loss"]


def rewrite_meta(path, change):
    """Rewrite a checkpoint's JSON metadata with change(meta), as an older version wrote it."""
    with np.load(path, allow_pickle=False) as npz:
        entries = {k: npz[k] for k in npz.files}
    meta = json.loads(entries["meta"].tobytes().decode("utf-8"))
    change(meta)
    entries["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    np.savez(path, **entries)


def test_a_run_saved_before_best_by_resumes_with_its_bleu_rule(tmp_path):
    cfg = TrainConfig(**{**SMALL, "max_steps": 2}, out_dir=str(tmp_path))
    train(cfg, log=quiet)

    def as_before(meta):
        del meta["train_config"]["best_by"]
        state = meta["state"]
        state.pop("best_score")
        state["best_bleu"] = 99.0  # a BLEU this tiny run cannot beat (its mean could)

    rewrite_meta(tmp_path / "last.npz", as_before)
    assert resume_config(tmp_path).best_by == "bleu"
    lines = []
    history = train(cfg.replace(max_steps=4), resume=True, log=lines.append)
    valid = [h for h in history if h["type"] == "valid"]
    assert valid[-1]["step"] == 4 and valid[-1]["bleu"] < 99.0
    assert not any("[best, saved]" in line for line in lines)  # judged by BLEU, not replaced
    resumed = load_checkpoint(tmp_path / "last.npz")
    assert resumed.state["best_score"] == 99.0 and resumed.train_config["best_by"] == "bleu"


def test_resume_keeps_the_rule_the_run_started_with(tmp_path):
    cfg = TrainConfig(**{**SMALL, "max_steps": 2}, best_by="exact_match", out_dir=str(tmp_path))
    train(cfg, log=quiet)
    # the API with the default rule (best_by "") continues the run's own rule
    train(cfg.replace(best_by="", max_steps=4), resume=True, log=quiet)
    ckpt = load_checkpoint(tmp_path / "last.npz")
    assert ckpt.train_config["best_by"] == "exact_match"
    assert ckpt.state["best_score"] == max(h["exact_match"] for h in ckpt.state["history"]
                                           if h["type"] == "valid")
    with pytest.raises(ConfigError, match="best_by"):
        resume_config(tmp_path, best_by="bleu")
