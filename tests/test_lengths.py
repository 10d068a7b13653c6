"""max_len from the data (npformer/training/lengths.py) and what train does when pairs are left out."""
import json

import pytest

from npformer.training import lengths
from npformer.training.checkpoint import load_checkpoint
from npformer.cli import build_parser, train_config_from_args
from npformer.nn.config import ConfigError
from npformer.training.config import TrainConfig
from npformer.devtools.scan_commands import make_command_corpus
from npformer.data import save_tsv
from npformer.training.lengths import batch_mib, choose_max_len
from npformer.training.loop import train

TINY = dict(tokenizer="word", d_model=16, n_heads=2, d_ff=32, n_layers=1, max_tokens=512,
            max_steps=2, warmup_steps=1, eval_every=2, eval_sentences=4, log_every=1,
            max_minutes=0.0, valid_frac=0.05, test_frac=0.05)


def free(T):
    return 1.0  # a memory estimate that never binds


def test_covers_every_pair_when_the_tail_is_short():
    choice = choose_max_len([5, 9, 12, 20, 7], free, budget_mib=100)
    assert (choice.max_len, choice.n_left_out, choice.reason) == (20, 0, "covers all")
    assert "the longest of the 5 training pairs" in choice.describe()


def test_long_tail_leaves_out_at_most_a_tenth_of_a_percent():
    few = [10] * 10_000 + [100] * 5  # 5 of 10,005 pairs would make max_len 10x longer
    choice = choose_max_len(few, free, budget_mib=100)
    assert (choice.max_len, choice.n_left_out, choice.reason) == (10, 5, "long tail")
    many = [10] * 10_000 + [100] * 20  # 0.2% is more than the 0.1% that may be left out
    assert choose_max_len(many, free, budget_mib=100).max_len == 100
    not_long = [10] * 10_000 + [19] * 5  # the tail would not double max_len: keep it
    assert choose_max_len(not_long, free, budget_mib=100).max_len == 19


def test_memory_bound_caps_max_len_and_says_so():
    choice = choose_max_len(list(range(5, 61)), memory=lambda T: 2.0 * T, budget_mib=80)
    assert (choice.max_len, choice.reason) == (40, "memory bound")
    assert choice.n_left_out == 20 and choice.mib == 80
    assert "memory bound" in choice.describe() and "20 of 56" in choice.describe()


def test_memory_estimate_grows_with_length_and_matches_the_measured_scale():
    sizes = dict(max_tokens=3072, d_model=128, n_heads=4, d_ff=512, n_layers=3,
                 vocab_size=4000)
    mib = [batch_mib(T, **sizes) for T in (64, 256, 1024, 3072)]
    assert mib == sorted(mib)
    # tracemalloc peaks of one train_step of this model (see batch_mib): 288, 369, 752 MiB
    for estimate, measured in zip(mib, (288, 369, 752)):
        assert measured <= estimate <= 1.15 * measured


def test_max_len_zero_is_for_translation_only():
    assert TrainConfig(max_len=0).max_len == 0
    with pytest.raises(ConfigError, match="max_len"):
        TrainConfig(task="lm", max_len=0)


@pytest.fixture(scope="module")
def commands_tsv(tmp_path_factory):
    path = tmp_path_factory.mktemp("scan") / "commands.tsv"
    save_tsv(make_command_corpus(400, seed=0), path)
    return path


def data_record(out):
    first = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert first["type"] == "data"
    return first


def test_max_len_from_the_data_covers_every_pair_and_resumes(tmp_path, commands_tsv):
    lines = []
    cfg = TrainConfig(**TINY, data=str(commands_tsv), max_len=0, out_dir=str(tmp_path))
    train(cfg, log=lines.append)
    ckpt = load_checkpoint(tmp_path / "last.npz")
    pairs = [line.split("\t") for line in commands_tsv.read_text().splitlines()]
    longest = max(len(a.split()) for _, a in pairs) + 1  # + BOS / EOS
    record = data_record(tmp_path)
    assert record["pairs_left_out"] == 0 and record["max_len_from_data"] is True
    assert record["tgt_tokens_per_word"] == record["src_tokens_per_word"] == 1.0
    # the longest pair may be in a held-out split: max_len covers the training pairs
    assert record["max_len"] == ckpt.model.config.max_len <= longest
    assert ckpt.train_config["max_len"] == record["max_len"]  # the run keeps the number
    assert any(line.startswith(f"max_len {record['max_len']} chosen from the data")
               for line in lines)
    assert not any("warning" in line for line in lines)
    history = train(cfg.replace(max_steps=4), resume=True, log=lines.append)  # max_len 0 again
    assert history[-1]["step"] == 4


def test_pairs_left_out_by_the_memory_bound_are_warned_about_and_logged(
        tmp_path, commands_tsv, monkeypatch):
    sizes = dict(max_tokens=TINY["max_tokens"], d_model=16, n_heads=2, d_ff=32, n_layers=1)
    vocab = 4 + 6  # specials + the six action symbols of the target side
    monkeypatch.setattr(lengths, "MEMORY_BUDGET_MIB", batch_mib(20, vocab_size=vocab, **sizes))
    lines = []
    train(TrainConfig(**TINY, data=str(commands_tsv), max_len=0, out_dir=str(tmp_path)),
          log=lines.append)
    record = data_record(tmp_path)
    assert record["max_len"] == 20 and record["pairs_left_out"] > 0
    warning = next(line for line in lines if line.startswith("warning:"))
    n = record["pairs_used"] + record["pairs_left_out"]
    assert f"{record['pairs_left_out']:,} of {n:,} training pairs" in warning
    assert "--max-len" in warning and "%" in warning


def test_an_explicit_max_len_is_respected_and_its_losses_reported(tmp_path, commands_tsv):
    args = build_parser().parse_args(["train", "--preset", "tsv", "--data", str(commands_tsv),
                                      "--max-len", "12"])
    assert train_config_from_args(args).max_len == 12
    assert train_config_from_args(build_parser().parse_args(
        ["train", "--preset", "tsv", "--data", str(commands_tsv)])).max_len == 0
    lines = []
    train(TrainConfig(**TINY, data=str(commands_tsv), max_len=12, out_dir=str(tmp_path)),
          log=lines.append)
    record = data_record(tmp_path)
    assert record["max_len"] == 12 and record["max_len_from_data"] is False
    assert record["pairs_left_out"] > 0
    assert load_checkpoint(tmp_path / "last.npz").model.config.max_len == 12
    warning = next(line for line in lines if line.startswith("warning:"))
    assert "raise --max-len, or give --max-len 0" in warning
