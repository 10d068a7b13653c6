"""The attention exercises: scaled dot-product attention, multi-head attention, a KV step.

The key/value-cache decoding step is graded against the uncached causal attention.

The references are the model answers in solutions.py (npformer's own attention is
fused and packed for speed, and its API is being reworked); tests/test_exercises.py
checks them against central differences and torch.
Shapes: B batch, T query length, S key length, C d_model, H heads, D head dim.
"""
import math

import numpy as np

from . import solutions
from .checker import Case, Exercise, Hint, LearnerError, call, matches
from .diagnose import Factor, Region, Structure, Term


def randn(rng, *shape):
    return rng.standard_normal(shape)


def padding(lengths, S):
    """Shapes: lengths (B,) -> (B,1,S) bool, True for real keys"""
    return (np.arange(S)[None, :] < np.asarray(lengths)[:, None])[:, None, :]


def causal(T):
    return np.tril(np.ones((T, T), dtype=bool))[None]  # (1,T,T)


# ----------------------------------------------------------------- one head
def attention_cases(rng):
    def case(label, B, T, S, D, mask):
        inputs = {"q": randn(rng, B, T, D), "k": randn(rng, B, S, D), "v": randn(rng, B, S, D),
                  "mask": mask}
        return Case(f"{label}, q {(B, T, D)}, k and v {(B, S, D)}, mask {mask.shape}",
                    inputs, randn(rng, B, T, D))
    return [
        case("self-attention, no mask", 2, 3, 3, 4, np.ones((1, 1, 3), dtype=bool)),
        case("cross-attention, padded keys", 2, 2, 4, 4, padding([4, 2], 4)),
        case("causal mask", 1, 4, 4, 2, causal(4)),
        case("odd head dim", 1, 3, 5, 3, np.ones((1, 1, 5), dtype=bool)),
    ]


def attention_reference(case):
    out, cache = solutions.attention_forward(**case.inputs)
    dq, dk, dv = solutions.attention_backward(case.dout, cache)
    return {"out": out, "dq": dq, "dk": dk, "dv": dv}


def attention_with(case, scale, use_mask=True):
    """The forward output with another scale (or no mask): what the common mistakes give."""
    q, k, v, mask = (case.inputs[n] for n in ("q", "k", "v", "mask"))
    scores = q @ k.transpose(0, 2, 1) * scale  # (B,T,S)
    P, _ = solutions.softmax_forward(scores, mask if use_mask else np.ones_like(mask))
    return P @ v


def attention_backward_without_inner_term(case):
    q, k, v = (case.inputs[n] for n in ("q", "k", "v"))
    _, (_, _, _, P, scale) = solutions.attention_forward(**case.inputs)
    dP = case.dout @ v.transpose(0, 2, 1)
    dscores = scale * P * dP  # the softmax backward without - <dP, P>
    return dscores @ k


def head_dim(case):
    return case.inputs["q"].shape[-1]


def wrong_scale(case, got):
    """The forward used another scale than 1/sqrt(D): none, 1/D, sqrt(D), 1/sqrt(S), 1/S.

    (A count that equals D in this case proves nothing and is skipped.)
    """
    D, S = head_dim(case), case.inputs["k"].shape[1]
    right = 1.0 / math.sqrt(D)
    for scale in (1.0, 1.0 / D, math.sqrt(D), 1.0 / math.sqrt(S), 1.0 / S):
        if abs(scale - right) > 1e-12 and matches(got["out"], attention_with(case, scale)):
            return True
    return False


def attention_structure(case, want):
    sqrt_d = math.sqrt(head_dim(case))
    scale = (Factor(sqrt_d, "the 1/sqrt(D) scale of the scores is missing here (the forward "
                            "scales the scores, so dq and dk carry 1/sqrt(D) too)"),
             Factor(1.0 / sqrt_d, "the 1/sqrt(D) scale is applied twice here"))
    partly_masked = ~case.inputs["mask"].all(axis=-1, keepdims=True)  # (B,T,1) or (1,1,1)
    masked = (Region("the queries that have masked keys (is the mask applied, with -inf "
                     "scores before the softmax?)", partly_masked),)
    return {"dq": Structure(factors=scale, regions=masked),
            "dk": Structure(factors=scale),
            "out": Structure(factors=(Factor(sqrt_d, "out is scaled: the scale goes on the "
                                                     "scores, inside the softmax"),),
                             regions=masked)}


ATTENTION = Exercise(
    name="attention", title="scaled dot-product attention (one head), forward and backward",
    roles=("forward", "backward"), functions=("attention_forward", "attention_backward"),
    outputs=("out", "dq", "dk", "dv"), make_cases=attention_cases, reference=attention_reference,
    wrt=(("q", "dq"), ("k", "dk"), ("v", "dv")), page="docs/derivations/attention.md",
    structure=attention_structure,
    hints=(
        Hint("the scores are divided by sqrt(D), D the head dim: scores = q k^T / sqrt(D); "
             "the 1/sqrt(D) scale is missing (or is another: 1/D, sqrt(D), 1/sqrt(S) or 1/S "
             "with S the number of keys).",
             lambda c, got, want: wrong_scale(c, got)),
        Hint("the forward scales the scores by 1/sqrt(D), so the backward does too: "
             "dscores = softmax_backward(dP, P) / sqrt(D) before dq and dk.",
             lambda c, got, want: matches(got["dq"], want["dq"] * math.sqrt(head_dim(c)))),
        Hint("the mask is not applied: masked keys must get -inf scores (zero weight) "
             "before the softmax.",
             lambda c, got, want: not c.inputs["mask"].all()
             and matches(got["out"], attention_with(c, 1.0 / math.sqrt(head_dim(c)), False))),
        Hint("the softmax backward inside attention is missing the `- <dP, P>` term: "
             "dscores = P * (dP - (dP * P).sum(-1, keepdims=True)) / sqrt(D).",
             lambda c, got, want: matches(got["dq"], attention_backward_without_inner_term(c))),
        Hint("dv = P^T dout (each value collects the gradient of every query that looked "
             "at it), not P dout.",
             lambda c, got, want: np.shape(got["dv"]) != want["dv"].shape or matches(
                 got["dv"], solutions.attention_forward(**c.inputs)[1][3] @ c.dout)),
    ))


# ----------------------------------------------------------------- multi-head
def mha_cases(rng):
    def case(label, B, T, S, C, H, mask):
        x_q = randn(rng, B, T, C)
        x_kv = x_q.copy() if label.startswith("self") else randn(rng, B, S, C)
        weights = {f"W_{n}": randn(rng, C, C) / math.sqrt(C) for n in "qkvo"}
        inputs = {"x_q": x_q, "x_kv": x_kv, **weights, "mask": mask, "n_heads": H}
        return Case(f"{label}, x_q {(B, T, C)}, x_kv {(B, S, C)}, {H} heads, "
                    f"mask {mask.shape}", inputs, randn(rng, B, T, C))
    return [
        case("cross-attention, padded keys", 2, 3, 4, 8, 2, padding([4, 3], 4)),
        case("self-attention, causal (x_kv a copy of x_q)", 1, 4, 4, 6, 3, causal(4)),
        case("one head", 2, 2, 3, 4, 1, np.ones((1, 1, 3), dtype=bool)),
    ]


def mha_reference(case):
    y, cache = solutions.mha_forward(**case.inputs)
    grads = solutions.mha_backward(case.dout, cache)
    return dict(zip(MHA_OUTPUTS, (y,) + grads))


def mha_with(case, scale_dim="D", split="transpose"):
    """The forward with the scale of another dimension or a wrong head split."""
    x_q, x_kv, mask, H = (case.inputs[n] for n in ("x_q", "x_kv", "mask", "n_heads"))
    B, T, C = x_q.shape
    D = C // H

    def heads(x):
        if split == "transpose":
            return solutions.split_heads(x, H)
        return x.reshape(B * H, x.shape[1], D)  # (B,T,C) read as (B,H,T,D): wrong

    q, k, v = heads(x_q @ case.inputs["W_q"]), heads(x_kv @ case.inputs["W_k"]), \
        heads(x_kv @ case.inputs["W_v"])
    scale = {"D": 1 / math.sqrt(D), "C": 1 / math.sqrt(C), "H": 1 / math.sqrt(H),
             "D without sqrt": 1 / D, "none": 1.0}[scale_dim]
    mask_g = np.repeat(mask, H, axis=0) if mask.shape[0] > 1 else mask
    P, _ = solutions.softmax_forward(q @ k.transpose(0, 2, 1) * scale, mask_g)
    ctx = P @ v
    if split == "transpose":
        ctx = solutions.merge_heads(ctx, B)
    else:
        ctx = ctx.reshape(B, T, C)
    return ctx @ case.inputs["W_o"]


def mha_forward_mistake(case, got):
    """(split, scale) of the wrong forward the learner's y equals, or (None, None).

    Every combination of the head split (right, plain reshape) and the scale (1/sqrt(D),
    1/sqrt(C), 1/sqrt(H), 1/D, none) is tried: a wrong split and a wrong scale together
    are both named. Counts equal to D in a case prove nothing there and are skipped.
    """
    H, C = case.inputs["n_heads"], case.inputs["x_q"].shape[-1]
    D = C // H
    counts = {"none": 1, "C": C, "H": H, "D without sqrt": D * D}  # scale = 1/sqrt(count)
    tried = {D}  # a count equal to one tried before gives the same forward: skipped
    wrong = []
    for name, count in counts.items():
        if count not in tried:
            tried.add(count)
            wrong.append(name)
    for split in ("transpose", "reshape") if H > 1 else ("transpose",):
        for scale_dim in ["D"] + wrong:
            if (split, scale_dim) != ("transpose", "D") and matches(
                    got["y"], mha_with(case, scale_dim, split)):
                return split, scale_dim
    return None, None


def dx_kv_one_path(case):
    """dx_kv through the keys only or through the values only."""
    _, cache = solutions.mha_forward(**case.inputs)
    att = cache[7]  # the attention cache of the heads
    B = case.inputs["x_q"].shape[0]
    dctx = solutions.split_heads(case.dout @ case.inputs["W_o"].T, case.inputs["n_heads"])
    _, dk, dv = solutions.attention_backward(dctx, att)
    return (solutions.merge_heads(dk, B) @ case.inputs["W_k"].T,
            solutions.merge_heads(dv, B) @ case.inputs["W_v"].T)


def mha_paths(case):
    """dQ, dK, dV merged back to (B,*,C): the gradients at the projections' outputs."""
    _, cache = solutions.mha_forward(**case.inputs)
    att, H = cache[7], case.inputs["n_heads"]
    B = case.inputs["x_q"].shape[0]
    dctx = solutions.split_heads(case.dout @ case.inputs["W_o"].T, H)
    dq, dk, dv = solutions.attention_backward(dctx, att)
    return (solutions.merge_heads(dq, B), solutions.merge_heads(dk, B),
            solutions.merge_heads(dv, B), cache[6])


def mha_structure(case, want):
    dQ, dK, dV, ctx = mha_paths(case)
    W = {n: case.inputs[f"W_{n}"] for n in "qkvo"}

    def untransposed(n, d):
        return ((f"W_{n} is not transposed in this path: it must be d{n.upper()} @ W_{n}.T",
                 d @ W[n]),)
    return {
        "dx_q": Structure(terms=(Term("dQ W_q^T", dQ @ W["q"].T, untransposed("q", dQ)),)),
        "dx_kv": Structure(terms=(Term("dK W_k^T (through the keys)", dK @ W["k"].T,
                                       untransposed("k", dK)),
                                  Term("dV W_v^T (through the values)", dV @ W["v"].T,
                                       untransposed("v", dV)))),
    }


MHA_OUTPUTS = ("y", "dx_q", "dx_kv", "dW_q", "dW_k", "dW_v", "dW_o")

MHA = Exercise(
    name="mha", title="multi-head attention (no biases), forward and backward",
    roles=("forward", "backward"), functions=("mha_forward", "mha_backward"),
    outputs=MHA_OUTPUTS, make_cases=mha_cases, reference=mha_reference,
    wrt=(("x_q", "dx_q"), ("x_kv", "dx_kv"), ("W_q", "dW_q"), ("W_k", "dW_k"),
         ("W_v", "dW_v"), ("W_o", "dW_o")),
    page="docs/derivations/attention.md", structure=mha_structure,
    hints=(
        Hint("split heads with x.reshape(B, T, H, D).transpose(0, 2, 1, 3): a plain "
             "reshape to (B, H, T, D) mixes positions and features.",
             lambda c, got, want: mha_forward_mistake(c, got)[0] == "reshape"),
        Hint("scale by 1/sqrt(D) with D = C / H the HEAD dim, not 1/sqrt(C) (nor 1/sqrt(H), "
             "nor 1/D).",
             lambda c, got, want: mha_forward_mistake(c, got)[1] in ("C", "H", "D without sqrt")),
        Hint("the 1/sqrt(D) scale of the scores is missing.",
             lambda c, got, want: mha_forward_mistake(c, got)[1] == "none"),
        Hint("x_kv feeds BOTH the keys and the values: dx_kv = dK W_k^T + dV W_v^T "
             "(a reused input sums the gradients of all its uses).",
             lambda c, got, want: any(matches(got["dx_kv"], part)
                                      for part in dx_kv_one_path(c))),
        Hint("a weight gradient has the weight's shape (C_in, C_out): dW = x^T d(output), "
             "summed over every row (reshape to (B*T, C) first).",
             lambda c, got, want: any(matches(got[n], want[n].T) for n in
                                      ("dW_q", "dW_k", "dW_v", "dW_o"))),
    ))


# ----------------------------------------------------------------- one KV-cache step
def kv_cases(rng):
    def case(label, B, T, C, H):
        weights = {f"W_{n}": randn(rng, C, C) / math.sqrt(C) for n in "qkvo"}
        inputs = {"x": randn(rng, B, T, C), **weights, "n_heads": H}
        return Case(f"{label}: {T} steps, x {(B, T, C)}, {H} heads", inputs, None)
    return [case("a batch", 2, 4, 8, 2), case("three heads", 1, 5, 6, 3),
            case("one step, one head", 1, 1, 4, 1)]


def kv_reference(case):
    """The uncached computation: causal multi-head self-attention over the whole sequence."""
    x, H = case.inputs["x"], case.inputs["n_heads"]
    W = [case.inputs[f"W_{n}"] for n in "qkvo"]
    y, _ = solutions.mha_forward(x, x, *W, causal(x.shape[1]), H)  # (B,T,C)
    B, T, C = x.shape
    return {"y (every step)": y,
            "k after the last step": solutions.split_heads(x @ W[1], H).reshape(B, H, T, C // H),
            "v after the last step": solutions.split_heads(x @ W[2], H).reshape(B, H, T, C // H)}


def kv_outputs(exercise, functions, case, got):
    """Run the learner's step once per position, from an empty cache; collect y, k, v."""
    x, H = case.inputs["x"], case.inputs["n_heads"]
    W = [case.inputs[f"W_{n}"].copy() for n in "qkvo"]
    B, T, C = x.shape
    k = v = np.zeros((B, H, 0, C // H))  # (B,H,0,D) an empty cache
    ys = []
    for t in range(T):
        out = call(functions["step"], "kv_attention_step", x[:, t:t + 1].copy(), *W, k, v, H)
        if not (isinstance(out, tuple) and len(out) == 3):
            raise LearnerError("kv_attention_step must return (y, k, v)")
        y, k, v = (np.asarray(a, dtype=np.float64) for a in out)
        ys.append(y)
        if y.shape != (B, 1, C) or k.ndim != 4 or v.ndim != 4:
            break  # the reports below say which shape is wrong
    got["y (every step)"] = np.concatenate(ys, axis=1) if ys[-1].shape == (B, 1, C) else ys[-1]
    got["k after the last step"], got["v after the last step"] = k, v


def kv_without(case, new_self=True, past=True, scale="D"):
    """y at every step when the new position does not see itself, or sees only itself."""
    x, H = case.inputs["x"], case.inputs["n_heads"]
    W_q, W_k, W_v, W_o = (case.inputs[f"W_{n}"] for n in "qkvo")
    B, T, C = x.shape
    q, k, v = (solutions.split_heads(x @ W, H) for W in (W_q, W_k, W_v))  # (B*H,T,D)
    allowed = np.tri(T, T, k=0 if new_self else -1, dtype=bool)  # (T,T) causal
    if not past:
        allowed = np.eye(T, dtype=bool)
    s = {"D": 1 / math.sqrt(C // H), "none": 1.0, "C": 1 / math.sqrt(C)}[scale]
    P, _ = solutions.softmax_forward(q @ k.transpose(0, 2, 1) * s, allowed[None])
    return solutions.merge_heads(P @ v, B) @ W_o  # (B,T,C)


def kv_mistake(case, got):
    """(new_self, past, scale) of the fewest wrong choices that give the learner's y, or None.

    The step's three choices (does the new position see itself, the cached past, which
    scale) are tried in every combination, so two mistakes together are both named. A step
    that does not see itself has nothing to attend at step 0: only steps 1.. are compared.
    """
    y = np.asarray(got["y (every step)"], dtype=np.float64)
    scales = ["D", "none"] + (["C"] if case.inputs["n_heads"] > 1 else [])
    combos = [(new_self, past, scale) for new_self in (True, False) for past in (True, False)
              for scale in scales if (new_self, past, scale) != (True, True, "D")]
    combos.sort(key=lambda c: (not c[0]) + (not c[1]) + (c[2] != "D"))  # fewest changes first
    T = y.shape[1] if y.ndim == 3 else 0
    for new_self, past, scale in combos:
        if not new_self and not past:
            continue  # sees nothing at all: not a step anyone writes
        wrong = kv_without(case, new_self, past, scale)
        if y.shape != wrong.shape or (not new_self and T < 2):
            continue
        if matches(y, wrong) if new_self else matches(y[:, 1:], wrong[:, 1:]):
            return new_self, past, scale
    return None


KV_STEP = Exercise(
    name="kv_step", title="one decoding step with a key/value cache (equal to the uncached "
                          "causal attention)",
    roles=("step",), functions=("kv_attention_step",),
    outputs=("y (every step)", "k after the last step", "v after the last step"),
    make_cases=kv_cases, reference=kv_reference, learner_outputs=kv_outputs,
    page="docs/derivations/attention.md",
    hints=(
        Hint("the new position must attend to itself too: append its key and value to the "
             "cache FIRST, then attend over every position so far (the causal mask lets "
             "position t see 0..t).",
             lambda c, got, want: (kv_mistake(c, got) or (True,))[0] is False),
        Hint("the step must attend over the cached past as well as the new position: "
             "concatenate past_k and the new key along the positions axis (axis 2).",
             lambda c, got, want: c.inputs["x"].shape[1] > 1
             and (kv_mistake(c, got) or (True, True))[1] is False),
        Hint("the scores are divided by sqrt(D), D = C / H the head dim, at every step.",
             lambda c, got, want: (kv_mistake(c, got) or (True, True, "D"))[2] != "D"),
        Hint("the cache grows by one position per step along axis 2 of (B, H, L, D): "
             "np.concatenate([past_k, k_new], axis=2).",
             lambda c, got, want: np.shape(got["k after the last step"])
             != want["k after the last step"].shape),
    ))
