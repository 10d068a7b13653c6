"""The encoder-block exercise: compose a whole pre-LN block from taped ops.

The learner writes `encoder_block(run, prefix, x, mask)` with the ops of
npformer/blocks.py (norm, self_attention, feed_forward, dropout, add): the forward
only. The tape does the backward: the check records the learner's block on a Tape,
replays it with a random upstream gradient, and compares the output, dx and every
parameter gradient with npformer's own `self_attention_block`, in float64. What
can go wrong is what the tape is for: a residual added with numpy's + instead of
the `add` op (x then gets only one of its two gradients), a parameter passed as a
plain array (it gets no gradient), the norm in the wrong place.

Shapes: B batch, T length, C d_model (H heads, F d_ff).
"""
import numpy as np

from ..blocks import Run, self_attention_block
from ..config import ModelConfig
from ..masks import additive, padding_mask
from ..params import init_params
from ..tape import Tape, Value
from .checker import Case, Exercise, Hint, LearnerError, call, matches

PREFIX = "encoder.0"  # the block's op and parameter names: "encoder.0.self_attn", ...


def block_cases(rng):
    def case(label, B, T, C, H, F, n_pad):
        cfg = ModelConfig(src_vocab_size=7, tgt_vocab_size=7, d_model=C, n_heads=H, d_ff=F,
                          n_encoder_layers=1, n_decoder_layers=1, max_len=T, dropout=0.0,
                          dtype="float64", seed=int(rng.integers(1 << 30)))
        params = {k: v + 0.1 * rng.standard_normal(v.shape)  # no zero biases: all must move
                  for k, v in init_params(cfg).items() if k.startswith(PREFIX + ".")}
        ids = np.ones((B, T), dtype=np.int64)  # (B,T), token 1 everywhere ...
        if n_pad:
            ids[0, T - n_pad:] = cfg.pad_id  # ... except padding at the end of row 0
        inputs = {"x": rng.standard_normal((B, T, C)), "mask": additive(padding_mask(
            ids, cfg.pad_id), cfg.dtype), "params": params, "cfg": cfg}
        return Case(f"{label}, x {(B, T, C)}, {H} heads", inputs, rng.standard_normal((B, T, C)))
    return [case("one sequence", 1, 4, 8, 2, 16, 0),
            case("a padded batch", 2, 5, 8, 2, 12, 2),
            case("odd sizes", 3, 3, 6, 3, 5, 1)]


def run_block(block, case, name="encoder_block"):
    """Record `block` on a tape, replay it with the case's upstream gradient.

    Returns {"y", "dx", "dparams"} (dparams: every parameter gradient, flattened in key order).
    """
    x_in = case.inputs
    params = {k: v.copy() for k, v in x_in["params"].items()}
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    tape = Tape()
    run = Run(tape, params, x_in["cfg"], False, None)
    y = call(block, name, run, PREFIX, Value(x_in["x"].copy(), "x"), x_in["mask"])
    if type(y) is not Value:
        raise LearnerError(f"{name} must return the Value of its last op (what tape.call "
                           "returns), not a plain array: without its key the tape cannot "
                           "start the backward there")
    left = tape.backward(grads, y.key, seed=case.dout)  # the gradients nothing consumed
    dx = left.get("x", np.zeros_like(x_in["x"]))
    return {"y": y.data, "dx": dx,
            "dparams": np.concatenate([grads[k].ravel() for k in sorted(grads)])}


def block_reference(case):
    return run_block(self_attention_block, case)


def block_outputs(exercise, functions, case, got):
    got.update(run_block(functions["block"], case))


def post_ln(case):
    """What the post-LN block (LN(x + f(x))) computes for this case."""
    post = case._replace(inputs={**case.inputs,
                                 "cfg": case.inputs["cfg"].replace(norm_position="post")})
    return run_block(self_attention_block, post)


BLOCK = Exercise(
    name="block", title="a whole pre-LN encoder block, composed of taped ops",
    roles=("block",), functions=("encoder_block",), outputs=("y", "dx", "dparams"),
    make_cases=block_cases, reference=block_reference, learner_outputs=block_outputs,
    page="docs/architecture.md",
    hints=(
        Hint("y is right but dx is not: x feeds both the sublayer and the residual, so it "
             "must get the SUM of both gradients. Add with the `add` op (a numpy + on "
             ".data leaves the tape, and that path's gradient is lost).",
             lambda c, got, want: matches(got["y"], want["y"])
             and not matches(got["dx"], want["dx"])),
        Hint("y matches the post-LN block, LN(x + sublayer(x)); this exercise is pre-LN: "
             "x + sublayer(LN(x)), as npformer's default.",
             lambda c, got, want: matches(got["y"], post_ln(c)["y"])),
        Hint("some parameters got no gradient: pass them as Values (run.param(key)), not as "
             "plain arrays, so the tape knows where their gradients go.",
             lambda c, got, want: matches(got["y"], want["y"])
             and np.count_nonzero(got["dparams"]) < np.count_nonzero(want["dparams"])),
    ))
