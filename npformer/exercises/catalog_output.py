"""The exercises of the output end and of cheap fine-tuning: tied output, fused loss, LoRA.

The tied output projection (one matrix, two gradient paths), the fused output
projection + loss, and LoRA (a frozen linear layer plus a low-rank update).

References: npformer/nn/layers/output_loss.py (float64) for the fused op; plain
NumPy formulas for the tied model and LoRA (their derivations are those of the
linear layer and the embedding, docs/derivations/).

Shapes: B batch, T length, C d_model, V vocab, N rows, r the LoRA rank.
"""
import tracemalloc

import numpy as np

from ..nn.kernels import cross_entropy_np
from .checker import Case, Exercise, Hint, LearnerError, Line, call, copy_inputs
from .diagnose import Factor, Region, Structure, Term


def randn(rng, *shape):
    return rng.standard_normal(shape)


PAD = 0  # the padding id in these cases


# ----------------------------------------------------------------- tied output projection
def tied_cases(rng):
    def case(label, ids, V, C):
        inputs = {"ids": np.array(ids), "E": randn(rng, V, C), "b": randn(rng, V)}
        return Case(f"{label}, ids {np.shape(ids)}, E {(V, C)}", inputs,
                    randn(rng, *np.shape(ids), V))
    return [case("a repeated token", [[1, 3, 1], [2, 1, 0]], 5, 3),
            case("distinct tokens", [[0, 1, 2, 3]], 6, 4), case("one token", [[2]], 3, 2)]


def tied_parts(case):
    """(the output path, the embedding path) of dE, each (V,C)."""
    ids, E, d = case.inputs["ids"], case.inputs["E"], case.dout
    V, C = E.shape
    x = E[ids].reshape(-1, C)  # (N,C)
    d2 = d.reshape(-1, V)  # (N,V)
    embedding_path = np.zeros_like(E)
    np.add.at(embedding_path, ids.reshape(-1), d2 @ E)  # (V,C)
    return d2.T @ x, embedding_path


def tied_reference(case):
    ids, E, b = case.inputs["ids"], case.inputs["E"], case.inputs["b"]
    output_path, embedding_path = tied_parts(case)
    return {"logits": E[ids] @ E.T + b, "dE": output_path + embedding_path,
            "db": case.dout.reshape(-1, E.shape[0]).sum(axis=0)}


def tied_structure(case, want):
    output_path, embedding_path = tied_parts(case)
    ids, E, d = case.inputs["ids"], case.inputs["E"], case.dout
    fancy = np.zeros_like(E)  # dE[ids] += ...: a repeated id keeps one of its rows
    fancy[ids.reshape(-1)] += d.reshape(-1, E.shape[0]) @ E
    counts = np.bincount(ids.reshape(-1), minlength=E.shape[0])
    return {"dE": Structure(
        terms=(Term("dlogits^T x (E as the output projection)", output_path),
               Term("the scatter of dlogits E into the rows of ids (E as the embedding)",
                    embedding_path, variants=(
                        ("the embedding path must ADD every use of a repeated token: "
                         "np.add.at(dE, ids, dlogits @ E), not dE[ids] += ...",
                         fancy),))),
        regions=(Region("the rows of tokens used more than once", (counts > 1)[:, None]),))}


TIED = Exercise(
    name="tied", title="tied embedding and output projection: one matrix, two gradient paths",
    roles=("forward", "backward"), functions=("tied_forward", "tied_backward"),
    outputs=("logits", "dE", "db"), make_cases=tied_cases, reference=tied_reference,
    wrt=(("E", "dE"), ("b", "db")), page="docs/derivations/embedding.md",
    structure=tied_structure, hints=())


# ----------------------------------------------------------------- fused output + loss
MEMORY_SHARE = 0.5  # the fused forward may hold at most half the size of the (N,V) logits


def output_loss_cases(rng):
    def case(label, B, T, C, V, n_pad, scale=1.0):
        targets = rng.integers(1, V, size=(B, T))
        if n_pad:
            targets[-1, T - n_pad:] = PAD
        inputs = {"x": scale * randn(rng, B, T, C), "E": randn(rng, V, C), "b": randn(rng, V),
                  "targets": targets, "pad_id": PAD}
        return Case(f"{label}, x {(B, T, C)}, E {(V, C)}", inputs, float(rng.uniform(0.5, 2)))
    return [case("padding", 2, 3, 4, 7, 2), case("no padding", 1, 5, 3, 5, 0),
            case("large logits (exp would overflow)", 1, 3, 4, 6, 1, scale=100.0),
            case(f"many rows: work in blocks, hold < {MEMORY_SHARE:.0%} of the logits", 4, 512,
                 8, 256, 100)]


def is_big(case):
    return case.inputs["x"].shape[1] >= 512


def output_loss_reference(case):
    """What npformer/nn/layers/output_loss.py computes, in one block, with the NumPy kernel."""
    x = case.inputs
    x2 = x["x"].reshape(-1, x["x"].shape[-1])  # (N,C)
    logits = x2 @ x["E"].T + x["b"]  # (N,V)
    loss, _, dlogits = cross_entropy_np.cross_entropy_forward_backward(
        logits, x["targets"].reshape(-1), PAD, 0.0)  # mean over non-padding rows, (N,V)
    dlogits = case.dout * dlogits
    return {"loss": float(loss), "dx": (dlogits @ x["E"]).reshape(x["x"].shape),
            "dE": dlogits.T @ x2, "db": dlogits.sum(axis=0),
            "peak memory": MEMORY_SHARE * 8 * logits.size}


def output_loss_outputs(exercise, functions, case, got):
    """Forward (its peak memory traced on the large case), then backward with dloss."""
    inputs = copy_inputs(case.inputs)
    if is_big(case):
        tracemalloc.start()
    try:
        out = call(functions["forward"], "forward", *inputs.values())
        if is_big(case):
            got["peak memory"] = tracemalloc.get_traced_memory()[1]
    finally:
        if is_big(case):
            tracemalloc.stop()
    if not (isinstance(out, tuple) and len(out) == 2):
        raise LearnerError("forward must return a pair (output, cache)")
    got["loss"] = out[0]
    if functions.get("backward") is not None:
        grads = call(functions["backward"], "backward", case.dout, out[1])
        if not isinstance(grads, (tuple, list)) or len(grads) != 3:
            raise LearnerError("backward must return 3 gradient(s): dx, dE, db")
        got.update(zip(("dx", "dE", "db"), grads))


def memory_line(what, got, want, case):
    if got <= want:
        return Line(what, True, "")
    n, V = case.inputs["targets"].size, case.inputs["E"].shape[0]
    return Line(what, False, f"your forward holds {got / 2**20:.1f} MB at its peak; the whole "
                             f"({n}, {V}) logits are {8 * n * V / 2**20:.1f} MB: compute them a "
                             f"block of rows at a time (at most {want / 2**20:.1f} MB)")


def output_loss_structure(case, want):
    n = max(int((case.inputs["targets"] != PAD).sum()), 1)
    factors = (Factor(n, "the 1/n of the mean over the n non-padding positions is missing"),
               Factor(1.0 / case.dout, "multiply by the upstream gradient dloss"))
    pad_rows = (case.inputs["targets"] == PAD)[..., None]
    return {"dx": Structure(factors=factors, regions=(
                Region("the padding positions (no loss there, so zero)", pad_rows),)),
            "dE": Structure(factors=factors), "db": Structure(factors=factors)}


OUTPUT_LOSS = Exercise(
    name="output_loss", title="output projection + cross-entropy fused, a block of rows at a "
                              "time",
    roles=("forward", "backward"), functions=("output_loss_forward", "output_loss_backward"),
    outputs=("loss", "dx", "dE", "db", "peak memory"), make_cases=output_loss_cases,
    reference=output_loss_reference, learner_outputs=output_loss_outputs,
    comparators={"peak memory": memory_line}, structure=output_loss_structure,
    wrt=(("x", "dx"), ("E", "dE"), ("b", "db")), page="docs/derivations/cross_entropy.md",
    fd_when=lambda case: not is_big(case),  # the small cases check the backward's calculus
    hints=(
        Hint("the fused op never holds the whole (N, V) logits: loop over blocks of rows, and "
             "for each compute the logits, the loss and the gradients, then drop the block.",
             lambda c, got, want: "peak memory" in got and got["peak memory"] > want[
                 "peak memory"]),
    ))


# ----------------------------------------------------------------- LoRA
def lora_cases(rng):
    def case(label, lead, c_in, c_out, r, alpha):
        inputs = {"x": randn(rng, *lead, c_in), "W": randn(rng, c_in, c_out),
                  "b": randn(rng, c_out), "A": randn(rng, c_in, r), "B": randn(rng, r, c_out),
                  "alpha": alpha}
        return Case(f"{label}, x {(*lead, c_in)}, W {(c_in, c_out)}, rank {r}, alpha {alpha}",
                    inputs, randn(rng, *lead, c_out))
    return [case("rows", (4,), 5, 3, 2, 8.0), case("a batch of sequences", (2, 3), 4, 4, 1, 2.0),
            case("odd sizes", (1, 1), 6, 2, 3, 1.0)]


def lora_reference(case):
    x, W, b, A, B, alpha = (case.inputs[k] for k in ("x", "W", "b", "A", "B", "alpha"))
    s, dy = alpha / A.shape[1], case.dout
    x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])  # (N,Cin), (N,Cout)
    return {"y": x @ W + b + s * (x @ A @ B), "dx": dy @ W.T + s * (dy @ B.T @ A.T),
            "dA": s * x2.T @ (dy2 @ B.T), "dB": s * (x2 @ A).T @ dy2}


def lora_structure(case, want):
    x, W, b, A, B, alpha = (case.inputs[k] for k in ("x", "W", "b", "A", "B", "alpha"))
    r = A.shape[1]
    s, dy = alpha / r, case.dout
    factors = (Factor(1 / s, "the scale alpha/r is missing (the forward multiplies the update "
                             "by alpha/r, so its gradients carry it too)"),
               Factor(r, "the scale is alpha/r, not alpha"),
               Factor(s, "the scale alpha/r is applied twice"))
    return {"y": Structure(terms=(Term("x W (the frozen layer)", x @ W),
                                  Term("b", np.broadcast_to(b, want["y"].shape)),
                                  Term("(alpha/r) x A B (the low-rank update)",
                                       s * (x @ A @ B)))),
            "dx": Structure(terms=(Term("dy W^T (through the frozen W)", dy @ W.T),
                                   Term("(alpha/r) dy B^T A^T (through the update)",
                                        s * (dy @ B.T @ A.T)))),
            "dA": Structure(factors=factors), "dB": Structure(factors=factors)}


LORA = Exercise(
    name="lora", title="LoRA: a frozen linear layer plus (alpha/r) x A B, forward and backward",
    roles=("forward", "backward"), functions=("lora_forward", "lora_backward"),
    outputs=("y", "dx", "dA", "dB"), make_cases=lora_cases, reference=lora_reference,
    wrt=(("x", "dx"), ("A", "dA"), ("B", "dB")), page="docs/derivations/linear.md",
    structure=lora_structure, hints=())
