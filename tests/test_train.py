"""Training loop, batching, checkpoints and resume."""
import json

import numpy as np
import pytest

from npformer.training.batching import bucket_batches, collate, encode_pairs
from npformer.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from npformer.training.config import TrainConfig
from npformer.models.transformer import Transformer
from npformer.tokenizers import BOS_ID, EOS_ID, PAD_ID, WordTokenizer
from npformer.training.loop import TrainingError, train

SMALL = dict(data="copy", d_model=16, n_heads=2, d_ff=32, n_layers=1, max_len=16,
             max_tokens=256, max_steps=6, eval_every=3, eval_sentences=5, log_every=1,
             max_minutes=0.0, warmup_steps=2, lr=3e-3)


def quiet(line):
    pass


def without_timings(history):
    """Log records without the wall-clock fields (everything else must match exactly)."""
    return [{k: v for k, v in h.items() if k not in ("tokens_per_s", "elapsed_s")}
            for h in history]


def test_collate_shifts_targets_and_pads():
    batch = collate([([5, 6, 7], [8, 9]), ([5], [8, 9, 10, 11])])
    assert batch.src.tolist() == [[5, 6, 7, EOS_ID], [5, EOS_ID, PAD_ID, PAD_ID]]
    assert batch.tgt_in.tolist() == [[BOS_ID, 8, 9, PAD_ID, PAD_ID], [BOS_ID, 8, 9, 10, 11]]
    assert batch.tgt_out.tolist() == [[8, 9, EOS_ID, PAD_ID, PAD_ID], [8, 9, 10, 11, EOS_ID]]
    assert batch.n_tokens == 3 + 5


def test_buckets_respect_token_budget_and_cover_every_example_once():
    rng = np.random.default_rng(0)
    examples = [(list(range(n)), list(range(m)))
                for n, m in rng.integers(1, 20, size=(300, 2))]
    batches = bucket_batches(examples, max_tokens=120, seed=1, epoch=0)
    seen = sorted(i for b in batches for i in b)
    assert seen == list(range(300))
    for b in batches:
        longest = max(max(len(examples[i][0]), len(examples[i][1])) + 1 for i in b)
        assert len(b) * longest <= 120
    # deterministic per (seed, epoch), different across epochs
    assert batches == bucket_batches(examples, 120, seed=1, epoch=0)
    assert batches != bucket_batches(examples, 120, seed=1, epoch=1)


def test_encode_pairs_drops_and_counts_too_long():
    tok = WordTokenizer.train(["a b c d e f"])
    examples, dropped = encode_pairs([("a b", "c d"), ("a b c d e f", "a")], tok, tok, max_len=5)
    assert len(examples) == 1 and dropped == 1


def test_resume_continues_exactly(tmp_path):
    straight = train(TrainConfig(**SMALL, out_dir=str(tmp_path / "a")), log=quiet)

    def interrupt_at_step_3(line):
        if line.startswith("step     3"):
            raise KeyboardInterrupt

    cfg_b = TrainConfig(**SMALL, out_dir=str(tmp_path / "b"))
    with pytest.raises(KeyboardInterrupt):
        train(cfg_b, log=interrupt_at_step_3)
    assert load_checkpoint(tmp_path / "b" / "last.npz").state["step"] == 3
    resumed = train(cfg_b, resume=True, log=quiet)
    # the whole history (the resumed run returns it all), timings aside, bit for bit
    assert [h["step"] for h in resumed if h["type"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert without_timings(resumed) == without_timings(straight)
    logged = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert without_timings(logged) == without_timings(straight)  # no duplicates, no gaps
    a = load_checkpoint(tmp_path / "a" / "last.npz").model.params
    b = load_checkpoint(tmp_path / "b" / "last.npz").model.params
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_training_writes_log_plot_and_checkpoints(tmp_path):
    out = tmp_path / "run"
    history = train(TrainConfig(**SMALL, out_dir=str(out)), log=quiet)
    for name in ("best.npz", "last.npz", "log.jsonl", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert lines == history
    assert [h["step"] for h in history if h["type"] == "valid"] == [3, 6]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow is the point of this test
def test_nonfinite_loss_stops_without_overwriting_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = TrainConfig(**SMALL, out_dir=str(out))
    train(cfg, log=quiet)
    before = (out / "last.npz").read_bytes()
    # a resumed run whose loss becomes NaN stops before saving over the last good checkpoint
    monkeypatch.setattr(Transformer, "batch_loss", lambda self, batch, **kw: float("nan"))
    with pytest.raises(TrainingError, match="loss became nan"):
        train(cfg.replace(max_steps=cfg.max_steps + 3), resume=True, log=quiet)
    assert (out / "last.npz").read_bytes() == before
    monkeypatch.undo()
    # a new run that diverges (lr 1e30) saves nothing at all
    fresh = tmp_path / "diverges"
    with pytest.raises(TrainingError, match="loss became"):
        train(TrainConfig(**{**SMALL, "lr": 1e30, "max_steps": 40, "clip_norm": 0.0,
                             "warmup_steps": 0, "eval_every": 1000}, out_dir=str(fresh)),
              log=quiet)
    assert not (fresh / "last.npz").exists()


def _tiny_checkpoint(tmp_path):
    train(TrainConfig(**{**SMALL, "max_steps": 1, "eval_every": 1, "warmup_steps": 0},
                      out_dir=str(tmp_path)),
          log=quiet)
    return tmp_path / "last.npz"


def test_checkpoint_round_trip_and_errors(tmp_path):
    path = _tiny_checkpoint(tmp_path)
    ckpt = load_checkpoint(path)
    again = save_checkpoint(tmp_path / "copy.npz", ckpt.model, ckpt.src_tokenizer,
                            ckpt.tgt_tokenizer, ckpt.train_config, ckpt.optimizer_state,
                            ckpt.state)
    ckpt2 = load_checkpoint(again)
    assert all(np.array_equal(ckpt.model.params[k], ckpt2.model.params[k])
               for k in ckpt.model.params)
    assert ckpt2.optimizer_state["t"] == 1
    assert ckpt2.src_tokenizer.encode("a b") == ckpt.src_tokenizer.encode("a b")
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed away

    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an npformer checkpoint"):
        load_checkpoint(foreign)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(CheckpointError):
        load_checkpoint(text)
    # a pickled object array inside must not load (allow_pickle=False)
    np.savez(tmp_path / "obj.npz", meta=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "obj.npz")


def test_interrupted_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = _tiny_checkpoint(tmp_path)
    before = path.read_bytes()
    ckpt = load_checkpoint(path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(CheckpointError, match="last.npz: could not save.*disk full"):
        save_checkpoint(path, ckpt.model, ckpt.src_tokenizer, ckpt.tgt_tokenizer)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if "tmp" in p.name) == []
