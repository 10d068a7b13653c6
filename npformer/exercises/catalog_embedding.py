"""The exercises for the token embedding (with learned positions) and the cross-entropy loss.

References: npformer's NumPy twins (npformer/nn/kernels/embedding_np.py,
cross_entropy_np.py). Shapes: B batch, T length, C features, V vocab, L positions
in the table, N rows.
"""
import math

import numpy as np

from ..nn.kernels import cross_entropy_np, embedding_np
from .checker import Case, Exercise, Hint, matches
from .diagnose import Factor, Region, Structure, Term


def randn(rng, *shape):
    return rng.standard_normal(shape)


# ----------------------------------------------------------------- embedding + positions
PAD = 0  # the padding id in these cases (as in npformer's tokenizers)


def embedding_cases(rng):
    def case(label, ids, V, C, L):
        inputs = {"ids": ids, "W": randn(rng, V, C), "P": randn(rng, L, C), "pad_id": PAD}
        return Case(f"{label}, ids {ids.shape}, W {(V, C)}, P {(L, C)}", inputs,
                    randn(rng, *ids.shape, C))
    return [
        case("distinct tokens, no padding", np.array([[1, 2, 3], [4, 5, 6]]), 7, 4, 5),
        case("a repeated token and padding", np.array([[3, 5, 3, 3], [2, 3, 0, 0]]), 6, 3, 6),
        case("one token", np.array([[2]]), 3, 5, 2),
    ]


def embedding_reference(case):
    ids, W, P = case.inputs["ids"], case.inputs["W"], case.inputs["P"]
    B, T = ids.shape
    C = W.shape[1]
    scale = math.sqrt(C)
    y = scale * W[ids] + P[:T]  # (B,T,C)
    dW = embedding_np.embedding_backward(np.zeros_like(W), ids.reshape(-1),
                                         scale * case.dout.reshape(-1, C))  # (V,C)
    dW[case.inputs["pad_id"]] = 0.0
    dP = np.zeros_like(P)
    dP[:T] = case.dout.sum(axis=0)  # (B,T,C) -> (T,C)
    return {"y": y, "dW": dW, "dP": dP}


def fancy_assignment(case):
    """What `dW[ids] += dy` gives: a repeated id keeps only one of its rows."""
    ids, W = case.inputs["ids"], case.inputs["W"]
    C = W.shape[1]
    dW = np.zeros_like(W)
    dW[ids.reshape(-1)] += math.sqrt(C) * case.dout.reshape(-1, C)
    dW[case.inputs["pad_id"]] = 0.0
    return dW


def not_zeroed(case, want):
    """The true scatter-add, with the padding row's gradient left in."""
    ids, W = case.inputs["ids"], case.inputs["W"]
    dW = want["dW"].copy()
    rows = ids.reshape(-1) == case.inputs["pad_id"]
    dW[case.inputs["pad_id"]] = math.sqrt(W.shape[1]) * case.dout.reshape(-1, W.shape[1])[rows].sum(0)
    return dW


def embedding_structure(case, want):
    ids, W, P = case.inputs["ids"], case.inputs["W"], case.inputs["P"]
    B, T = ids.shape
    C = W.shape[1]
    pad_used = np.zeros(P.shape[0], dtype=bool)
    pad_used[:T] = (ids == case.inputs["pad_id"]).any(axis=0)  # positions some sentence pads
    counts = np.bincount(ids.reshape(-1), minlength=W.shape[0])
    return {
        "y": Structure(terms=(Term("sqrt(C) * W[ids] (the token rows, scaled by sqrt(C))",
                                   math.sqrt(C) * W[ids]),
                              Term("P[:T] (the positions)", np.broadcast_to(P[:T], (B, T, C))))),
        "dP": Structure(
            factors=(Factor(math.sqrt(C), "dP is scaled by sqrt(C), but only the token rows "
                                          "are scaled in the forward; the positions are not"),
                     Factor(1.0 / B, "dP is averaged over the batch; every sentence adds its "
                                     "gradient to the rows of P it used")),
            regions=(Region("the positions where a sentence has padding (a padding token "
                            "still uses its position: dP sums dy over the whole batch)",
                            pad_used[:, None]),
                     Region("the rows of P past T (not used: zero)",
                            (np.arange(P.shape[0]) >= T)[:, None]))),
        "dW": Structure(
            factors=(Factor(math.sqrt(C), "dW is scaled by sqrt(C) twice"),),
            regions=(Region("the padding row W[pad_id] (padding never learns: zero)",
                            (np.arange(W.shape[0]) == case.inputs["pad_id"])[:, None]),
                     Region("the rows of tokens used more than once (each use adds its "
                            "gradient: np.add.at)", (counts > 1)[:, None]))),
    }


EMBEDDING = Exercise(
    name="embedding", title="token embedding * sqrt(C) + learned positions, forward and backward",
    roles=("forward", "backward"), functions=("embedding_forward", "embedding_backward"),
    outputs=("y", "dW", "dP"), make_cases=embedding_cases, reference=embedding_reference,
    wrt=(("W", "dW"), ("P", "dP")), page="docs/derivations/embedding.md",
    structure=embedding_structure,
    fd_allowed=lambda case, name: (np.arange(case.inputs[name].size) // case.inputs[name].shape[1]
                                   != PAD) if name == "W" else np.ones(case.inputs[name].size, bool),
    hints=(
        Hint("a token used twice must receive BOTH gradients: `dW[ids] += dy` keeps only one "
             "of them (fancy-index assignment does not accumulate); use "
             "np.add.at(dW, ids, dy).",
             lambda c, got, want: matches(got["dW"], fancy_assignment(c))),
        Hint("the padding row's gradient must be zero (padding never learns): "
             "set dW[pad_id] = 0 after the scatter.",
             lambda c, got, want: (c.inputs["ids"] == PAD).any()
             and matches(got["dW"], not_zeroed(c, want))),
        Hint("the forward multiplies by sqrt(C), so the gradient does too: "
             "scatter sqrt(C) * dy into dW.",
             lambda c, got, want: matches(got["dW"], want["dW"] / math.sqrt(
                 c.inputs["W"].shape[1]))),
        Hint("every sentence in the batch used position t: dP[t] = dy[:, t].sum(axis=0) "
             "(a sum over the batch, not a mean or one sentence).",
             lambda c, got, want: np.shape(got["dP"]) == want["dP"].shape
             and c.inputs["ids"].shape[0] > 1
             and (matches(got["dP"], want["dP"] / c.inputs["ids"].shape[0])
                  or matches(np.asarray(got["dP"])[:c.inputs["ids"].shape[1]], c.dout[0]))),
        Hint("dP has the shape of the whole table P (L, C): rows T..L-1 were not used and "
             "get zero.",
             lambda c, got, want: np.shape(got["dP"]) != want["dP"].shape),
    ))


# ----------------------------------------------------------------- cross-entropy
def cross_entropy_cases(rng):
    def case(label, logits, targets, smoothing):
        inputs = {"logits": logits, "targets": targets, "pad_id": PAD, "smoothing": smoothing}
        return Case(f"{label}, logits {logits.shape}, smoothing {smoothing}", inputs,
                    float(rng.uniform(0.5, 2.0)))  # a random dloss: 1.0 would hide a missing factor
    V = 5
    return [
        case("no padding", randn(rng, 2, 3, V), rng.integers(1, V, size=(2, 3)), 0.0),
        case("padding and label smoothing", randn(rng, 2, 4, V),
             np.array([[1, 4, 2, 0], [3, 0, 0, 0]]), 0.1),
        case("large logits (exp would overflow)", 500.0 * randn(rng, 1, 3, V),
             np.array([[2, 1, 0]]), 0.1),
        case("two classes, one position", randn(rng, 1, 1, 2), np.array([[1]]), 0.2),
    ]


def cross_entropy_reference(case):
    logits, targets = case.inputs["logits"], case.inputs["targets"]
    V = logits.shape[-1]
    loss, n_valid, dlogits = cross_entropy_np.cross_entropy_forward_backward(
        logits.reshape(-1, V), targets.reshape(-1), case.inputs["pad_id"], case.inputs["smoothing"])
    return {"loss": loss, "dlogits": case.dout * dlogits.reshape(logits.shape)}


def cross_entropy_without_ignoring(case):
    """The loss averaged over every position, padding included."""
    x = dict(case.inputs, pad_id=-1)
    return cross_entropy_reference(Case(case.label, x, case.dout))


def n_valid(case):
    return max(int((case.inputs["targets"] != case.inputs["pad_id"]).sum()), 1)


def smoothing_over_others(case):
    """The loss with q = 1 - eps on the target and eps / (V - 1) on every other class."""
    logits, targets, eps = case.inputs["logits"], case.inputs["targets"], case.inputs["smoothing"]
    V = logits.shape[-1]
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    q = np.full(logits.shape, eps / (V - 1))
    np.put_along_axis(q, targets[..., None], 1.0 - eps, axis=-1)
    valid = targets != case.inputs["pad_id"]
    return float((-(q * logp).sum(-1) * valid).sum() / n_valid(case))


def cross_entropy_structure(case, want):
    logits, targets, eps = case.inputs["logits"], case.inputs["targets"], case.inputs["smoothing"]
    V = logits.shape[-1]
    valid = (targets != case.inputs["pad_id"])[..., None]  # (B,T,1)
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)  # (B,T,V)
    onehot = np.zeros_like(p)
    np.put_along_axis(onehot, targets[..., None], 1.0, axis=-1)
    q = (1 - eps) * onehot + eps / V
    scale = case.dout * valid / n_valid(case)  # (B,T,1)
    variants = (("the backward uses the one-hot target: with label smoothing the target "
                 "distribution is q = (1 - eps) * onehot + eps / V, in the backward too",
                 -scale * onehot),) if eps > 0 else ()
    return {"dlogits": Structure(
        terms=(Term("dloss * p / n (p = softmax(logits))", scale * p),
               Term("- dloss * q / n (q = the smoothed target distribution)", -scale * q,
                    variants)),
        factors=(Factor(n_valid(case), "the 1/n of the mean over the n non-padding positions "
                                       "is missing"),)
        + ((Factor(1.0 / float(case.dout), "the upstream gradient dloss is not multiplied "
                                           "in"),) if abs(float(case.dout)) != 1 else ()),
        regions=(Region("the padding positions (targets == pad_id: no loss, zero gradient)",
                        ~valid),))}


CROSS_ENTROPY = Exercise(
    name="cross_entropy",
    title="mean cross-entropy with label smoothing, padding ignored, forward and backward",
    roles=("forward", "backward"), functions=("cross_entropy_forward", "cross_entropy_backward"),
    outputs=("loss", "dlogits"), make_cases=cross_entropy_cases, reference=cross_entropy_reference,
    wrt=(("logits", "dlogits"),), page="docs/derivations/cross_entropy.md",
    structure=cross_entropy_structure,
    hints=(
        Hint("padding positions must be ignored: average over the positions whose target is "
             "not pad_id, and give padding rows a zero gradient.",
             lambda c, got, want: (c.inputs["targets"] == PAD).any() and (
                 matches(got["loss"], cross_entropy_without_ignoring(c)["loss"])
                 or matches(got["dlogits"], cross_entropy_without_ignoring(c)["dlogits"])
                 or matches(got["dlogits"], want["dlogits"] * n_valid(c)
                            / c.inputs["targets"].size))),
        Hint("the gradient of a MEAN over n non-padding positions carries a 1/n: "
             "dlogits = dloss * (p - q) / n.",
             lambda c, got, want: n_valid(c) > 1
             and matches(got["dlogits"], want["dlogits"] * n_valid(c))),
        Hint("multiply by the upstream gradient: dlogits = dloss * (softmax - q) / n "
             "(dloss is not always 1).",
             lambda c, got, want: matches(got["dlogits"], want["dlogits"] / c.dout)),
        Hint("the sign is flipped: the loss falls when the target's logit rises, so "
             "dlogits = softmax - q, not q - softmax.",
             lambda c, got, want: matches(got["dlogits"], -want["dlogits"])),
        Hint("label smoothing spreads eps over ALL V classes, the target included: "
             "q = (1 - eps) * onehot + eps / V (torch's convention).",
             lambda c, got, want: c.inputs["smoothing"] > 0
             and matches(got["loss"], smoothing_over_others(c))),
        Hint("exp overflows for large logits: subtract the row maximum first "
             "(log-softmax = z - log(sum(exp(z))) with z = logits - max).",
             lambda c, got, want: np.abs(c.inputs["logits"]).max() > 100
             and not np.isfinite(np.asarray(got["loss"], float)).all()),
    ))
