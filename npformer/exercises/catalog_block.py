"""The block exercises: compose whole pre-LN blocks from taped ops.

The learner writes the forward only, with the ops of npformer/nn/blocks.py (norm,
self_attention, cross_attention, feed_forward, dropout, add):
- `encoder_block(run, prefix, x, mask)`: self-attention then feed-forward. With a
  padding mask it is an encoder layer; with a causal mask (one of the cases) it is
  the layer of a GPT-style language model;
- `decoder_block(run, prefix, y, memory, self_mask, cross_mask)`: causal
  self-attention, cross-attention over the encoder memory, feed-forward.
The tape does the backward: the check records the learner's block on a Tape,
replays it with a random upstream gradient, and compares the output, the input
gradients (dx; or dy and dmemory) and every parameter gradient with npformer's own
`self_attention_block` / `decoder_layer`, in float64. What can go wrong is what
the tape is for: a residual added with numpy's + instead of the `add` op (x then
gets only one of its two gradients), a value passed as a plain array (it gets no
gradient), the norm in the wrong place. The residual add itself (y = a + b, both
inputs get dy) is graded here, as part of every block.

Shapes: B batch, T length, S source length, C d_model (H heads, F d_ff).
"""
import numpy as np

from ..nn.blocks import Pass, decoder_layer, self_attention_block
from ..nn.config import ModelConfig
from ..nn.masks import additive, causal_mask, padding_mask
from ..nn.params import init_params
from ..nn.tape import Tape, Value
from .checker import Case, Exercise, Hint, LearnerError, call, matches

PREFIX = "encoder.0"  # the encoder block's op and parameter names: "encoder.0.self_attn", ...
DECODER_PREFIX = "decoder.0"  # the decoder block's: "decoder.0.cross_attn", ...


def block_config(rng, T, C, H, F):
    return ModelConfig(src_vocab_size=7, tgt_vocab_size=7, d_model=C, n_heads=H, d_ff=F,
                       n_encoder_layers=1, n_decoder_layers=1, max_len=T, dropout=0.0,
                       dtype="float64", seed=int(rng.integers(1 << 30)))


def block_params(rng, cfg, prefix):
    """The block's parameters, moved off their init (no zero biases: all must move)."""
    return {k: v + 0.1 * rng.standard_normal(v.shape)
            for k, v in init_params(cfg).items() if k.startswith(prefix + ".")}


def padded_ids(B, T, n_pad, pad_id):
    ids = np.ones((B, T), dtype=np.int64)  # (B,T), token 1 everywhere ...
    if n_pad:
        ids[0, T - n_pad:] = pad_id  # ... except padding at the end of row 0
    return ids


# ----------------------------------------------------------------- encoder (and GPT) block
def block_cases(rng):
    def case(label, B, T, C, H, F, n_pad, causal=False):
        cfg = block_config(rng, T, C, H, F)
        keys = padding_mask(padded_ids(B, T, n_pad, cfg.pad_id), cfg.pad_id)  # (B,1,T)
        mask = keys & causal_mask(T) if causal else keys  # (B,T,T) or (B,1,T)
        inputs = {"x": rng.standard_normal((B, T, C)), "mask": additive(mask, cfg.dtype),
                  "params": block_params(rng, cfg, PREFIX), "cfg": cfg}
        return Case(f"{label}, x {(B, T, C)}, {H} heads", inputs, rng.standard_normal((B, T, C)))
    return [case("one sequence", 1, 4, 8, 2, 16, 0),
            case("a padded batch", 2, 5, 8, 2, 12, 2),
            case("odd sizes", 3, 3, 6, 3, 5, 1),
            case("a GPT block: causal and padding mask", 2, 4, 6, 2, 8, 1, causal=True)]


def run_block(block, case, name="encoder_block", values=("x",), prefix=PREFIX):
    """Record `block` on a tape, replay it with the case's upstream gradient.

    `values` are the case's inputs passed as Values (their gradients are returned as
    "d" + name); the other inputs follow as plain arrays (the masks).
    Returns {"y", "d<value>" ..., "dparams"} (dparams: every parameter gradient,
    flattened in key order).
    """
    x_in = case.inputs
    params = {k: v.copy() for k, v in x_in["params"].items()}
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    tape = Tape()
    run = Pass(tape, params, x_in["cfg"], False, None)
    args = [Value(x_in[v].copy(), v) for v in values]
    args += [x_in[k] for k in x_in if k not in values and k not in ("params", "cfg")]
    y = call(block, name, run, prefix, *args)
    if type(y) is not Value:
        raise LearnerError(f"{name} must return the Value of its last op (what tape.call "
                           "returns), not a plain array: without its key the tape cannot "
                           "start the backward there")
    left = tape.backward(grads, y.key, seed=case.dout)  # the gradients nothing consumed
    out = {"y": y.data}
    for v in values:
        out["d" + v] = left.get(v, np.zeros_like(x_in[v]))
    out["dparams"] = np.concatenate([grads[k].ravel() for k in sorted(grads)])
    return out


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
    name="block", title="a whole pre-LN encoder block (or GPT block), composed of taped ops",
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


# ----------------------------------------------------------------- decoder block
def decoder_cases(rng):
    def case(label, B, T, S, C, H, F, n_pad_src, n_pad_tgt):
        cfg = block_config(rng, max(T, S), C, H, F)
        src_ok = padding_mask(padded_ids(B, S, n_pad_src, cfg.pad_id), cfg.pad_id)  # (B,1,S)
        tgt_ok = padding_mask(padded_ids(B, T, n_pad_tgt, cfg.pad_id), cfg.pad_id)  # (B,1,T)
        inputs = {"y": rng.standard_normal((B, T, C)), "memory": rng.standard_normal((B, S, C)),
                  "self_mask": additive(tgt_ok & causal_mask(T), cfg.dtype),  # (B,T,T)
                  "cross_mask": additive(src_ok, cfg.dtype),  # (B,1,S)
                  "params": block_params(rng, cfg, DECODER_PREFIX), "cfg": cfg}
        return Case(f"{label}, y {(B, T, C)}, memory {(B, S, C)}, {H} heads", inputs,
                    rng.standard_normal((B, T, C)))
    return [case("one sentence pair", 1, 3, 4, 8, 2, 12, 0, 0),
            case("a padded batch", 2, 4, 5, 8, 2, 10, 2, 1),
            case("odd sizes", 2, 2, 3, 6, 3, 5, 1, 0)]


def run_decoder(block, case):
    """run_block for the decoder: its output is called "out" (y is its input)."""
    got = run_block(block, case, "decoder_block", ("y", "memory"), DECODER_PREFIX)
    got["out"] = got.pop("y")
    return got


def decoder_reference(case):
    return run_decoder(lambda run, prefix, *args: decoder_layer(run, 0, *args), case)


def decoder_outputs(exercise, functions, case, got):
    got.update(run_decoder(functions["block"], case))


DECODER_BLOCK = Exercise(
    name="decoder_block", title="a whole pre-LN decoder block: causal self-attention, "
                                "cross-attention, feed-forward, on the tape",
    roles=("block",), functions=("decoder_block",), outputs=("out", "dy", "dmemory", "dparams"),
    make_cases=decoder_cases, reference=decoder_reference, learner_outputs=decoder_outputs,
    page="docs/architecture.md",
    hints=(
        Hint("memory gets no gradient: pass the memory Value itself to cross_attention (not "
             "memory.data), so the encoder receives the gradient of every decoder block.",
             lambda c, got, want: not np.any(got["dmemory"]) and np.any(want["dmemory"])),
        Hint("out is right but dy is not: each residual must go through the `add` op, so y "
             "gets the SUM of the gradients of its uses (a numpy + on .data leaves the tape).",
             lambda c, got, want: matches(got["out"], want["out"])
             and not matches(got["dy"], want["dy"]) and np.any(got["dmemory"])),
        Hint("some parameters got no gradient: pass them as Values (run.param(key)), not as "
             "plain arrays, so the tape knows where their gradients go.",
             lambda c, got, want: matches(got["out"], want["out"])
             and np.count_nonzero(got["dparams"]) < np.count_nonzero(want["dparams"])),
    ))
