"""Every layer's backward, and the whole model's gradient, against float64 central differences."""
import pytest

from npformer.tools import gradcheck


def _failures(rows):
    return "\n".join(f"{r.name}: max abs err {r.max_abs_err:.2e}, rel err {r.rel_err:.2e}"
                     for r in rows if not r.passed)


def test_every_layer_backward_matches_finite_differences():
    rows = gradcheck.layer_checks(seed=0)
    names = {r.name.split(":")[0] for r in rows}
    for layer in ("embedding", "positional (learned)", "positional (fixed)", "linear",
                  "recurrent (Elman RNN, BPTT)",
                  "tied output", "layernorm", "dropout", "residual add",
                  "feed-forward (relu)", "feed-forward (gelu)",
                  "attention core", "self-attention (padding)", "causal self-attention",
                  "cross-attention",
                  "cross-entropy (smoothing 0.1)", "cross-entropy (class labels)",
                  "pooling (mean, padding)", "pooling (first, padding)",
                  "pooling (last, padding)", "pooling (before_eos, padding)"):
        assert layer in names, f"no gradient check for {layer}"
    assert all(r.passed for r in rows), _failures(rows)


def test_whole_model_gradient_over_every_parameter():
    """Every parameter tensor of every variant of the three kinds has a passing row."""
    from npformer.models import build_model
    from npformer.nn.params import param_specs

    rows = gradcheck.model_checks(seed=1)
    assert all(r.passed for r in rows), _failures(rows)
    checked = {}
    for r in rows:
        label, key = r.name[len("model ["):].split("]: ")
        checked.setdefault(label, []).append(key)
    assert set(checked) == set(gradcheck.MODEL_VARIANTS)
    classes = set()
    for label, (model_class, _) in gradcheck.MODEL_VARIANTS.items():
        cfg = gradcheck.tiny_config(label)
        assert type(build_model(cfg)) is model_class, label
        assert sorted(checked[label]) == sorted(param_specs(cfg)), label
        classes.add((model_class.__name__, cfg.kind, cfg.pooling if cfg.n_classes else ""))
    assert {("LanguageModel", "decoder-only", ""), ("Classifier", "decoder-only", "last"),
            ("Classifier", "decoder-only", "before_eos"),
            ("Classifier", "encoder-only", "mean"),
            ("Classifier", "encoder-only", "first")} <= classes


def test_check_detects_a_wrong_backward():
    """The checker itself must be able to fail: a backward off by 1% is caught."""
    import numpy as np

    from npformer.nn.layers import linear_backward, linear_forward

    def wrong_backward(dy, cache):
        dx, dW, db = linear_backward(dy, cache)
        return dx, dW * 1.01, db

    rng = np.random.default_rng(0)
    rows = gradcheck.check_layer("linear", linear_forward, wrong_backward,
                                 [rng.normal(size=(2, 3, 4)), rng.normal(size=(4, 5)),
                                  rng.normal(size=5)], {0: "dx", 1: "dW", 2: "db"})
    assert [r.passed for r in rows] == [True, False, True]


def test_check_detects_a_wrong_pooling_backward():
    """A pooling backward that also sends gradient to padding positions is caught."""
    import numpy as np

    from npformer.nn.layers import pool_backward, pool_forward, pool_weights

    def leaky_backward(dy, cache):  # spreads dy over every position, padding included
        dx, _ = pool_backward(dy, cache)
        B, T = cache.weights.shape
        return dx + (cache.weights == 0)[:, :, None] * dy[:, None, :] / T, None

    rng = np.random.default_rng(0)
    ids = np.array([[1, 5, 6, 2], [1, 7, 2, 0]])
    for mode in ("mean", "first", "last"):
        args = [rng.normal(size=(2, 4, 6)), pool_weights(ids != 0, mode, np.float64)]
        good = gradcheck.check_layer("pool", pool_forward, pool_backward, args, {0: "dx"})
        bad = gradcheck.check_layer("pool", pool_forward, leaky_backward, args, {0: "dx"})
        assert [r.passed for r in good + bad] == [True, False], mode


@pytest.mark.parametrize("rel,expected", [(0.0, True), (1e-3, False)])
def test_make_row_bounds(rel, expected):
    import numpy as np

    a = np.array([1.0, -2.0, 3.0])
    assert gradcheck.make_row("x", a, a * (1 + rel)).passed is expected
