"""`npformer sweep`: a tiny grid runs end to end, the power-law fit is right, bad flags fail clearly.

The shipped notebooks/data/sweep.json comes from the full grid (its command is in
notebooks/13_scale.ipynb); here a 2 x 2 grid of a few steps runs through the same code.
"""
import json

import numpy as np
import pytest

from npformer import cli
from npformer.tools.sweep import (SweepError, compute, fit_power_law, mean_over_seeds, parse_size,
                                  read_sweep, sweep)

TINY = dict(sizes=["16x1", "32x1"], token_amounts=[1000, 3000], seeds=(0,), steps=6,
            eval_every=3)


@pytest.fixture(scope="module")
def tiny_rows():
    return sweep(**TINY)


def test_a_tiny_sweep_gives_one_row_per_run(tiny_rows):
    assert [(r["size"], r["data_size"]) for r in tiny_rows] == [
        ("16x1", 1000), ("32x1", 1000), ("16x1", 3000), ("32x1", 3000)]
    for row in tiny_rows:
        assert [step for step, _, _ in row["curve"]] == [3, 6]
        assert row["valid_loss"] == min(loss for _, _, loss in row["curve"])
        assert 0 < row["non_embedding_params"] < row["params"]
        assert row["tokens_seen"] == row["curve"][-1][1] > row["curve"][0][1] > 0
        assert row["data_tokens"] >= row["data_size"]  # + one EOS per line
        assert np.isfinite(row["valid_loss"])
    small, large = tiny_rows[0], tiny_rows[1]
    assert large["non_embedding_params"] > 3 * small["non_embedding_params"]
    assert mean_over_seeds(tiny_rows)[("16x1", 1000)] == small["valid_loss"]


def test_the_same_sweep_gives_the_same_losses(tiny_rows):
    again = sweep(**{**TINY, "sizes": ["16x1"], "token_amounts": [1000]})
    assert again[0]["curve"] == tiny_rows[0]["curve"]


def test_fit_power_law_recovers_a_known_exponent():
    x = np.geomspace(1e3, 1e6, 6)
    a, alpha = fit_power_law(x, 7.0 * x ** -0.25)
    assert abs(alpha - 0.25) < 1e-9 and abs(a - 7.0) < 1e-6
    a, alpha = fit_power_law(x, 1.8 + 3.0 * x ** -0.5, floor=1.8)  # the reducible part
    assert abs(alpha - 0.5) < 1e-9
    with pytest.raises(ValueError, match="y > floor"):
        fit_power_law(x, 1.0 + 0 * x, floor=2.0)


def test_compute_is_six_n_d():
    assert compute(1000, 2000) == 6.0 * 1000 * 2000


@pytest.mark.parametrize("text", ["64", "17x1", "64x0", "axb", "16x1x2"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(SweepError, match="size"):
        parse_size(text)
    assert parse_size("48X2") == (48, 2)


def test_cli_writes_json_and_plot(tmp_path, capsys):
    out, plot = tmp_path / "s.json", tmp_path / "s.png"
    code = cli.main(["sweep", "--sizes", "16x1,32x1", "--tokens", "1000,3000", "--steps", "2",
                     "--eval-every", "2", "--out", str(out), "--plot", str(plot)])
    assert code == 0
    saved = read_sweep(out)
    assert len(saved["rows"]) == 4 and saved["settings"]["steps"] == 2
    assert abs(saved["entropy_floor"] - 1.7946) < 1e-3  # mixed toy text, EOS predicted
    assert plot.stat().st_size > 0
    assert "wrote" in capsys.readouterr().out
    json.dumps(saved)  # plain JSON types only


@pytest.mark.parametrize("argv, message", [
    (["--sizes", "17x1"], "--sizes: size '17x1'"),
    (["--tokens", "10"], "integers >= 100"),
    (["--tokens", "5000,five"], "comma-separated integers"),
    (["--seeds", "0,0"], "--seeds: 0,0 repeats a value"),
    (["--steps", "0"], "outside"),
    (["--data", "toy-icl"], "invalid choice"),
])
def test_cli_bad_flags_are_one_line_errors(argv, message, capsys):
    try:
        code = cli.main(["sweep", *argv, "--out", "/nonexistent-dir/x/s.json"])
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
