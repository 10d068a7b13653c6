"""`npformer sweep`: compute counted right, fits that recover known answers, a tiny grid.

Compute is checked against a hand count, the IsoFLOP and loss-surface fits against
synthetic answers; a tiny grid runs end to end (single pass, its own schedule, its
budget spent); bad flags fail clearly.

The shipped notebooks/data/scale*.json come from the full sweep (its commands are in
notebooks/13_scale.ipynb); here a grid of a few steps runs through the same code.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from npformer import cli
from npformer.tasks import PRESETS
from npformer.training.config import TrainConfig
from npformer.models import build_model
from npformer.tools.sweep import (LEARNING_RATES, SweepError, body_params, bootstrap_optima,
                                  bootstrap_surface, cell_points, choose_learning_rates,
                                  count_params, fit_loss_surface, fit_parabola, fit_power_law,
                                  flops_per_token, frontier, mean_context, parse_budget, parse_size,
                                  plan_run, pooled_seed_std, read_sweep, schedule_pairs,
                                  size_config, sweep)

NOTEBOOK_DATA = Path(__file__).resolve().parent.parent / "notebooks" / "data"
TINY_FACTS = {"vocab": 414, "context": 15.6, "tokens_per_step": 2000.0,
              "text_tokens_per_token": 0.92}
TINY_GRID = {4e8: ["16x1", "32x1"]}  # about 3 and 1 steps of 2048 tokens


@pytest.fixture(scope="module")
def tiny_rows():
    return sweep(TINY_GRID, seeds=(0,), facts=TINY_FACTS)


# ----------------------------------------------------------------------- counting
def test_body_params_by_hand_and_from_the_model():
    # 32x2 by hand: per block 4 x (32*32 + 32) attention + (32*128 + 128) + (128*32 + 32)
    # feed-forward + 2 x 2 x 32 norms = 4,224 + 4,224 + 4,128 + 128 = 12,704; two blocks
    # and a final norm (64): 25,472
    assert body_params(32, 2) == 25_472
    for width, layers in ((16, 1), (32, 2), (48, 3)):
        cfg = TrainConfig(**{**PRESETS["lm"], **size_config(width, layers)})
        model = build_model(cfg.model_config(100, 100))
        n_all, n_body = count_params(model)
        assert n_body == body_params(width, layers)
        assert n_all == n_body + 100 * width + 100  # tied embedding + output bias


def test_flops_per_token_against_a_hand_count():
    parts = flops_per_token(32, 2, vocab=100, context=10)
    assert parts["body"] == 6 * 25_472  # 6 FLOPs per weight per token: 2 forward, 4 backward
    assert parts["output"] == 6 * 100 * 32  # the tied V x W output projection
    assert parts["attention"] == 12 * 2 * 10 * 32  # QK^T and AV: 2 x 2 x T x W, x 3
    assert parts["total"] == 152_832 + 19_200 + 7_680


def test_mean_context_weights_each_token():
    # windows of 2 and 4 tokens: 2 tokens see 2 keys, 4 tokens see 4: (4 + 16) / 6
    assert mean_context([2, 4]) == pytest.approx(20 / 6, rel=1e-12)


def test_plan_run_spends_the_budget_in_one_pass():
    steps, data_size = plan_run(64, 2, 1e12, TINY_FACTS)
    per_token = flops_per_token(64, 2, 414, 15.6)["total"]
    assert abs(steps * 2000.0 * per_token / 1e12 - 1) < 2000.0 / (1e12 / per_token)  # <1 step
    assert data_size * (1 / 0.92) >= 1.1 * steps * 2000.0 * (1 - 1e-9)  # text for one pass


# ----------------------------------------------------------------------- fitting
def test_fit_power_law_recovers_a_known_exponent():
    x = np.geomspace(1e3, 1e6, 6)
    a, alpha = fit_power_law(x, 7.0 * x ** -0.25)
    assert abs(alpha - 0.25) < 1e-9 and abs(a - 7.0) < 1e-6
    with pytest.raises(ValueError, match="y > floor"):
        fit_power_law(x, 1.0 + 0 * x, floor=2.0)


def test_fit_parabola_finds_the_bottom():
    n = np.geomspace(1e4, 1e6, 5)
    loss = 2.0 + 0.3 * (np.log(n) - np.log(8e4)) ** 2
    n_opt, l_opt, (a, _, _) = fit_parabola(n, loss)
    assert n_opt == pytest.approx(8e4, rel=1e-9) and l_opt == pytest.approx(2.0, abs=1e-12)
    assert a == pytest.approx(0.3, rel=1e-9)
    with pytest.raises(ValueError, match="no valley"):
        fit_parabola(n, 3.0 - 0.1 * np.log(n) ** 2)
    with pytest.raises(ValueError, match="three"):
        fit_parabola(n[:2], loss[:2])


def _synthetic_rows(exponent, noise, seeds=2, rng=None):
    """IsoFLOP rows whose valleys sit at N_opt = 0.05 C^exponent, with seed noise.

    Each run reads D = C / (6 N) tokens, so D_opt ~ C^(1 - exponent).
    """
    rows = []
    for budget in (1e11, 1e12, 1e13):
        centre = np.log(0.05 * budget ** exponent)
        for n in np.exp(centre + np.linspace(-1.5, 1.5, 5)):
            for seed in range(seeds):
                err = rng.normal() * noise if rng is not None else 0.0
                rows.append({"budget": budget, "params": float(n), "seed": seed,
                             "tokens_seen": budget / (6 * n),
                             "valid_loss": 2.0 + 0.1 * (np.log(n) - centre) ** 2 + err})
    return rows


def test_frontier_of_a_known_answer():
    rows = _synthetic_rows(0.5, noise=0.0)
    front = frontier(rows)
    assert front["a"] == pytest.approx(0.5, abs=1e-9) and front["b"] == pytest.approx(0.5,
                                                                                    abs=1e-9)
    n_opt = 0.05 * front["budget"] ** 0.5
    assert np.allclose(front["n_opt"], n_opt, rtol=1e-9)
    assert np.allclose(front["tokens_per_param"], front["budget"] / (6 * n_opt ** 2), rtol=1e-9)
    assert np.allclose(front["loss_opt"], 2.0, atol=1e-12)


def test_bootstrap_interval_covers_the_truth_and_tells_it_from_kaplan():
    def exponent(rows):
        return lambda cells: frontier(rows, cells)["a"]

    rows = _synthetic_rows(0.5, noise=0.01, rng=np.random.default_rng(1))
    value, low, high = bootstrap_optima(rows, exponent(rows), n_boot=300)
    assert low < 0.5 < high and low < value < high
    assert high < 0.73  # the noise is small enough to rule out Kaplan's exponent
    noisy = _synthetic_rows(0.5, noise=0.05, rng=np.random.default_rng(1))
    wide = bootstrap_optima(noisy, exponent(noisy), n_boot=300)
    assert wide[2] - wide[1] > high - low  # more seed noise, a wider interval
    # 15 cells x 5 degrees of freedom: the estimate is within 20% of the truth (95% range of
    # sqrt(chi2_75 / 75): 0.84 to 1.16)
    many = _synthetic_rows(0.5, noise=0.05, seeds=6, rng=np.random.default_rng(2))
    assert pooled_seed_std(many) == pytest.approx(0.05, rel=0.2)


def test_fit_loss_surface_recovers_a_known_surface():
    n, d = np.meshgrid(np.geomspace(1e4, 1e6, 5), np.geomspace(1e5, 1e7, 5))
    loss = 1.8 + 40.0 * n ** -0.4 + 300.0 * d ** -0.35
    fit = fit_loss_surface(n.ravel(), d.ravel(), loss.ravel())
    assert fit["E"] == pytest.approx(1.8, abs=1e-9) and fit["rms"] < 1e-9  # on the grid
    assert fit["alpha"] == 0.4 and fit["beta"] == 0.35
    assert fit["A"] == pytest.approx(40.0, rel=1e-6) and fit["B"] == pytest.approx(300.0,
                                                                                    rel=1e-6)
    fixed = fit_loss_surface(n.ravel(), d.ravel(), loss.ravel(), E=1.8)  # E given
    assert fixed["E"] == 1.8 and fixed["alpha"] == 0.4 and fixed["rms"] < 1e-9
    wrong = fit_loss_surface(n.ravel(), d.ravel(), loss.ravel(), E=1.0)
    assert wrong["rms"] > 1e-3  # a wrong floor cannot fit as well
    # several loss vectors at once give each its own fit
    both = fit_loss_surface(n.ravel(), d.ravel(), np.stack([loss.ravel(), loss.ravel() + 0.1],
                                                           axis=1))
    assert np.allclose(both["E"], [1.8, 1.9], atol=1e-9) and np.all(both["alpha"] == 0.4)


def _surface_rows(noise, rng=None, seeds=2):
    """IsoFLOP rows on a known surface L = 1.8 + 40 N^-0.4 + 300 D^-0.35 (+ seed noise)."""
    rows = []
    for budget in (1e11, 1e12, 1e13):
        for n in (1e4, 3e4, 1e5, 3e5):
            d = budget / (6 * n)
            for seed in range(seeds):
                err = rng.normal() * noise if rng is not None else 0.0
                rows.append({"budget": budget, "params": n, "seed": seed,
                             "tokens_seen": d + seed - 0.5,  # seeds differ; their mean is d
                             "valid_loss": 1.8 + 40 * n ** -0.4 + 300 * d ** -0.35 + err})
    return rows


def test_cell_points_average_over_seeds_in_cell_means_order():
    rows = _surface_rows(noise=0.0)
    n, d, loss = cell_points(rows)
    assert list(n[:4]) == [1e4, 3e4, 1e5, 3e5] and len(n) == 12  # budgets, then sizes, ascending
    assert d[0] == pytest.approx(1e11 / 6e4, rel=1e-12)  # the mean of the two seeds' tokens
    assert loss[0] == pytest.approx(rows[0]["valid_loss"], rel=1e-12)


def test_bootstrap_surface_is_exact_without_noise_and_covers_the_truth_with_it():
    exact = bootstrap_surface(_surface_rows(noise=0.0), n_boot=50)
    for name, truth in (("E", 1.8), ("alpha", 0.4), ("beta", 0.35)):
        value, low, high = exact[name]  # no seed noise: every resample is the data itself
        assert value == pytest.approx(truth, abs=1e-6) and low == pytest.approx(value) \
            and high == pytest.approx(value)
    noisy = bootstrap_surface(_surface_rows(0.003, np.random.default_rng(0)), n_boot=200)
    value, low, high = noisy["E"]
    assert low < 1.8 < high and low < value < high and high - low > 1e-3
    fixed = bootstrap_surface(_surface_rows(0.003, np.random.default_rng(0)), E=1.8, n_boot=50)
    assert fixed["E"] == (1.8, 1.8, 1.8)  # E given: not fitted


def test_schedule_pairs_match_a_run_with_the_longer_runs_point_at_its_tokens():
    short = {"size": "16x1", "seed": 0, "steps": 10, "tokens_seen": 100, "valid_loss": 2.0}
    longer = {"size": "16x1", "seed": 0, "steps": 40, "tokens_seen": 400, "valid_loss": 1.9,
              "curve": [[10, 100.5, 2.1], [20, 200, 2.0], [30, 300, 1.95], [40, 400, 1.9]]}
    other_seed = {**longer, "seed": 1}
    alone = {**short, "size": "32x1"}  # no longer run of its size
    pairs = schedule_pairs([short, alone], [longer, other_seed])
    assert pairs == [{"size": "16x1", "seed": 0, "steps": 10, "tokens": 100, "own_loss": 2.0,
                      "longer_loss": 2.1, "longer_step": 10, "longer_steps": 40,
                      "longer_tokens": 100.5}]
    assert schedule_pairs([short], [longer], tolerance=0.001) == []  # 0.5% apart


def test_choose_learning_rates_keeps_the_lower_of_near_ties():
    rows = [{"d_model": 16, "lr": lr, "valid_loss": loss}
            for lr, loss in ((3e-3, 2.50), (6e-3, 2.40), (1.2e-2, 2.395))]  # a near tie
    rows += [{"d_model": 32, "lr": lr, "valid_loss": loss}
             for lr, loss in ((3e-3, 2.50), (6e-3, 2.45), (1.2e-2, 2.30))]  # a clear win
    assert choose_learning_rates(rows, margin=0.01) == {16: 6e-3, 32: 1.2e-2}
    assert choose_learning_rates(rows, margin=0.0) == {16: 1.2e-2, 32: 1.2e-2}


def test_the_tuned_rates_are_those_of_the_shipped_learning_rate_sweep():
    shipped = read_sweep(NOTEBOOK_DATA / "scale_lr.json")
    assert choose_learning_rates(shipped["rows"]) == LEARNING_RATES


# ----------------------------------------------------------------------- the sweep
def test_a_tiny_sweep_spends_its_budget_in_one_pass(tiny_rows):
    assert [r["size"] for r in tiny_rows] == ["16x1", "32x1"]
    for row in tiny_rows:
        assert row["passes"] < 1  # single pass: no token read twice
        assert row["tokens_seen"] == row["curve"][-1][1]
        assert row["valid_loss"] == row["curve"][-1][2] and np.isfinite(row["valid_loss"])
        assert row["flops"]["total"] == pytest.approx(
            sum(row["flops"][k] for k in ("body", "output", "attention")), rel=1e-12)
        # the budget is spent to within one batch of tokens
        per_token = row["flops"]["total"] / row["tokens_seen"]
        assert abs(row["flops"]["total"] - row["budget"]) <= 2048 * per_token
        assert row["warmup_steps"] <= row["steps"]
    small, large = tiny_rows
    assert small["steps"] > large["steps"]  # a smaller model reads more tokens for the budget


def test_the_same_sweep_gives_the_same_losses(tiny_rows):
    again = sweep({4e8: ["16x1"]}, seeds=(0,), facts=TINY_FACTS)
    assert again[0]["curve"] == tiny_rows[0]["curve"]


@pytest.mark.parametrize("text", ["64", "17x1", "64x0", "axb", "16x1x2"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(SweepError, match="size"):
        parse_size(text)
    assert parse_size("48X2") == (48, 2)


def test_parse_budget():
    assert parse_budget("1e12:32x2,48x2") == (1e12, ["32x2", "48x2"])
    for bad in ("1e12", "x:32x2", "-1:32x2", "1e12:32x2,32x2", "inf:32x2"):
        with pytest.raises(SweepError):
            parse_budget(bad)


def test_cli_writes_json_and_plot(tmp_path, capsys):
    out, plot = tmp_path / "s.json", tmp_path / "s.png"
    code = cli.main(["sweep", "--budget", "3e8:16x1,32x1,32x2", "--out", str(out),
                     "--plot", str(plot)])
    assert code == 0
    saved = read_sweep(out)
    assert len(saved["rows"]) == 3 and saved["settings"]["grid"] == {"3e+08": [
        "16x1", "32x1", "32x2"]}
    assert abs(saved["entropy_floor"] - 1.7946) < 1e-3  # mixed toy text, EOS predicted
    assert saved["corpus"]["vocab"] == saved["rows"][0]["vocab"]
    assert math.isfinite(saved["corpus"]["context"])
    assert plot.stat().st_size > 0
    assert "wrote" in capsys.readouterr().out
    json.dumps(saved)  # plain JSON types only


@pytest.mark.parametrize("argv, message", [
    (["--budget", "1e9:17x1"], "--budget: size '17x1'"),
    (["--budget", "abc"], "FLOPS:SIZES"),
    (["--budget", "1e9:16x1", "--budget", "1e9:32x1"], "given twice"),
    (["--seeds", "0,0"], "--seeds: 0,0 repeats a value"),
    (["--lrs", "0.1,fast"], "comma-separated numbers"),
    (["--lrs", "2"], "in (0, 1)"),
    (["--data", "toy-icl"], "invalid choice"),
])
def test_cli_bad_flags_are_one_line_errors(argv, message, capsys):
    try:
        code = cli.main(["sweep", *argv, "--out", "/nonexistent-dir/x/s.json"])
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
