"""The tape: reverse replay, summed gradients for reused values, one replay only."""
import numpy as np
import pytest
from helpers import assert_close, tiny_model, toy_batch

from npformer.nn.layers import add_backward, add_forward, linear_backward, linear_forward
from npformer.nn.params import zero_grads
from npformer.nn.tape import Tape, Value, param
from npformer.tools.timed_tape import TimedTape


def test_value_used_twice_receives_the_sum_of_its_gradients():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4))
    params = {"W1": rng.normal(size=(4, 5)), "b1": np.zeros(5),
              "W2": rng.normal(size=(4, 5)), "b2": np.zeros(5)}
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    tape = Tape()
    x = Value(x, "x")  # an input that no op produced: its gradient is left over
    h1 = tape.call("h1", linear_forward, linear_backward, x, param(params, "W1"), param(params, "b1"))
    h2 = tape.call("h2", linear_forward, linear_backward, x, param(params, "W2"), param(params, "b2"))
    y = tape.call("y", add_forward, add_backward, h1, h2)
    assert (h1.key, h2.key, y.key) == ("h1", "h2", "y")  # an op's output is keyed by its name
    x = x.data
    dy = rng.normal(size=(3, 5))
    leftover = tape.backward(grads, "y", seed=dy)
    # y = x W1 + x W2 (+ biases): dy/dx = dy W1^T + dy W2^T
    assert_close("dx", leftover["x"], dy @ params["W1"].T + dy @ params["W2"].T, 1e-12)
    assert_close("dW1", grads["W1"], x.T @ dy, 1e-12)


def test_encoder_memory_gradient_is_sum_over_decoder_layers():
    model = tiny_model(n_decoder_layers=3)
    src, tgt_in, tgt_out = toy_batch()
    tape = Tape()
    model.loss(src, tgt_in, tgt_out, tape=tape)
    grads = tape.backward(model.grads, "loss", keep_activation_grads=True)
    # recompute the cross-attention contributions to dL/dmemory one by one
    total = 0
    cross = [rec for rec in tape.records if rec.name.endswith("cross_attn")]
    memory_key = cross[0].input_keys[1]  # the key/value input: the encoder's output
    assert memory_key == "encoder.norm"  # pre-LN: the final norm of the encoder stack
    for rec in cross:
        assert rec.input_keys[1] == memory_key
        total = total + rec.backward(grads[rec.name], rec.cache)[1]  # dmemory
    assert len(cross) == 3
    assert_close("d memory", grads[memory_key], total, 1e-12)


def test_tied_embedding_gets_gradient_from_both_uses():
    model = tiny_model(tie_output=True)
    src, tgt_in, tgt_out = toy_batch()
    tape = Tape()
    model.loss(src, tgt_in, tgt_out, tape=tape)
    act = tape.backward(model.grads, "loss", keep_activation_grads=True)
    out_rec = next(r for r in tape.records if r.name == "loss")  # output projection + loss
    emb_rec = next(r for r in tape.records if r.name == "tgt_embed")
    assert "tgt_embed.W" in out_rec.input_keys and "tgt_embed.W" in emb_rec.input_keys
    from_output = out_rec.backward(1.0, out_rec.cache)[1]  # dE of x E^T
    from_lookup = emb_rec.backward(act["tgt_embed"], emb_rec.cache)[1]  # dE of the lookup
    assert np.abs(from_output).sum() > 0 and np.abs(from_lookup).sum() > 0
    assert_close("d tgt_embed.W", model.grads["tgt_embed.W"], from_output + from_lookup, 1e-12)


def test_backward_twice_raises_and_zero_grad_is_explicit():
    model = tiny_model()
    src, tgt_in, tgt_out = toy_batch()
    tape = Tape()
    model.loss(src, tgt_in, tgt_out, tape=tape)
    tape.backward(model.grads, "loss")
    first = {k: v.copy() for k, v in model.grads.items()}
    with pytest.raises(RuntimeError, match="already"):
        tape.backward(model.grads, "loss")
    # a second forward/backward without zeroing accumulates: exactly twice the gradient
    tape = Tape()
    model.loss(src, tgt_in, tgt_out, tape=tape)
    tape.backward(model.grads, "loss")
    for k in first:
        assert_close(k, model.grads[k], 2 * first[k], 1e-12)
    zero_grads(model.grads)
    assert all(not v.any() for v in model.grads.values())


def test_summary_lists_ops_shapes_and_times():
    model = tiny_model()
    src, tgt_in, tgt_out = toy_batch()
    tape = TimedTape()
    model.loss(src, tgt_in, tgt_out, tape=tape)
    tape.backward(model.grads, "loss")
    text = tape.summary(times=True)
    lines = text.splitlines()
    assert len(lines) == len(tape.records) + 2
    assert "decoder.1.cross_attn" in text and "3x5x16" in text  # decoder output (B,T,C)
    assert "fwd ms" in lines[0] and "bwd ms" in lines[0]
    assert [r.name for r in tape.records][-2:] == ["decoder.norm", "loss"]
    assert all(s > 0 for s in tape.forward_seconds) and sum(tape.backward_seconds) > 0


def test_an_op_name_used_twice_is_an_error():
    tape = Tape()
    a = Value(np.ones(3), "a")
    tape.call("y", add_forward, add_backward, a, a)
    with pytest.raises(ValueError, match="'y' was already recorded"):
        tape.call("y", add_forward, add_backward, a, a)
