"""The RNN language model (the sequential baseline of notebooks 05 and 10): gradients, causality."""
import numpy as np
import pytest
from helpers import assert_close

from npformer.tools import gradcheck
from npformer.training.batching import Batch
from npformer.nn.layers.recurrent import rnn_forward
from npformer.training.optim import AdamW
from npformer.models.rnn_lm import RNNConfig, RNNLanguageModel
from npformer.training.loop import train_step

V, C = 11, 6
IDS_IN = np.array([[1, 3, 4, 5, 6], [1, 7, 8, 0, 0]])  # row 1 padded
IDS_OUT = np.array([[3, 4, 5, 6, 2], [7, 8, 2, 0, 0]])  # padded targets are ignored


def test_rnn_layer_is_the_step_by_step_recurrence():
    rng = np.random.default_rng(0)
    x, h0 = rng.normal(size=(2, 4, C)), rng.normal(size=(2, C))
    W_x, W_h, b = rng.normal(size=(C, C)), rng.normal(size=(C, C)), rng.normal(size=C)
    h, _ = rnn_forward(x, h0, W_x, W_h, b)
    prev = h0
    for t in range(4):
        prev = np.tanh(x[:, t] @ W_x + prev @ W_h + b)
        assert_close(f"h[:, {t}]", h[:, t], prev, 1e-13, 1e-13)


def test_rnn_lm_gradient_of_every_parameter_float64():
    """Whole model, float64: every parameter's gradient against central differences."""
    model = RNNLanguageModel(RNNConfig(V, C, dtype="float64", seed=1))
    rng = np.random.default_rng(2)
    for p in model.params.values():  # move off the init (zero biases)
        p += 0.1 * rng.normal(size=p.shape)
    rows = gradcheck.parameter_rows(
        "rnn lm", model, lambda tape: model.loss(IDS_IN, IDS_OUT, tape=tape, label_smoothing=0.1),
        rng)
    assert sorted(r.name.split(": ")[1] for r in rows) == sorted(model.params)
    assert all(r.passed for r in rows), [r for r in rows if not r.passed]


def test_rnn_lm_is_causal_and_ignores_padding():
    model = RNNLanguageModel(RNNConfig(V, C, dtype="float64"))
    a = model.forward(IDS_IN)
    changed = IDS_IN.copy()
    changed[0, 3] = 9  # a later token cannot change earlier predictions
    b = model.forward(changed)
    assert_close("positions before 3", b[0, :3], a[0, :3], 1e-14, 1e-14)
    assert np.abs(b[0, 3:] - a[0, 3:]).max() > 1e-6
    alone = model.loss(IDS_IN[1:, :3], IDS_OUT[1:, :3])
    padded = model.loss(IDS_IN[1:], IDS_OUT[1:])
    assert padded == pytest.approx(alone, rel=1e-12)


def test_rnn_lm_learns_a_batch_with_the_shared_training_step():
    """train.train_step (the transformer's step) trains it: the loss falls 4x in 150 steps."""
    model = RNNLanguageModel(RNNConfig(V, 16, seed=0))
    opt = AdamW(model.params, lr=1e-2)
    batch = Batch(None, IDS_IN, IDS_OUT, 8)
    first = model.batch_loss(batch)
    for _ in range(150):
        last = train_step(model, opt, batch, 1e-2, None, clip_norm=1.0)
    assert last < first / 4, (first, last)
