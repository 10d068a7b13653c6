"""The training exercises: one AdamW step, and gradient clipping by the global norm.

AdamW is checked over three steps against npformer.training.optim.AdamW (the same update
as torch.optim.AdamW); clipping against npformer.training.optim.clip_grad_norm (the rule
of torch.nn.utils.clip_grad_norm_).

Shapes: every array has the parameter's shape.
"""
import math

import numpy as np

from ..training.optim import AdamW, clip_grad_norm
from .checker import Case, Exercise, Hint, LearnerError, call
from .diagnose import Mistakes

STEPS = 3  # updates per case: enough for the bias corrections and the moments to matter


def adamw_cases(rng):
    def case(label, shape, lr, betas, eps, weight_decay, grad_size=1.0):
        grads = [grad_size * rng.standard_normal(shape) for _ in range(STEPS)]
        inputs = {"p": rng.standard_normal(shape), "grads": grads, "lr": lr, "betas": betas,
                  "eps": eps, "weight_decay": weight_decay}
        return Case(f"{label}, p {shape}, lr {lr}, betas {betas}, eps {eps}, "
                    f"weight_decay {weight_decay}", inputs, None)
    return [
        case("npformer's defaults", (3, 4), 1e-3, (0.9, 0.98), 1e-9, 0.01),
        case("no weight decay (plain Adam)", (5,), 1e-2, (0.9, 0.999), 1e-8, 0.0),
        case("strong weight decay", (2, 3), 0.05, (0.8, 0.9), 1e-8, 0.1),
        case("tiny gradients (eps matters)", (4,), 1e-3, (0.9, 0.98), 1e-8, 0.01, 1e-5),
    ]


def trajectory(p, steps):
    """{output name: value} from (p, m, v) after each step."""
    (p1, _, _), (p3, m3, v3) = steps[0], steps[-1]
    return {"p after step 1": p1, f"p after step {STEPS}": p3,
            f"m after step {STEPS}": m3, f"v after step {STEPS}": v3}


def adamw_reference(case):
    x = case.inputs
    params = {"w": x["p"].copy()}
    opt = AdamW(params, lr=x["lr"], betas=x["betas"], eps=x["eps"],
                weight_decay=x["weight_decay"], no_decay=lambda key, p: False)
    steps = []
    for g in x["grads"]:
        opt.step({"w": g})
        steps.append((params["w"].copy(), opt.exp_avg["w"].copy(), opt.exp_avg_sq["w"].copy()))
    return trajectory(x["p"], steps)


def simulate(case, bias_correction=True, decoupled=True, decay_times_lr=True, eps_inside=False,
             no_bias_m=False, no_bias_v=False, betas_swapped=False, decay_after=False):
    """AdamW with some of the classic mistakes switched on."""
    x = case.inputs
    b1, b2 = x["betas"][::-1] if betas_swapped else x["betas"]
    lr, eps, wd = x["lr"], x["eps"], x["weight_decay"]
    p, m, v = x["p"].copy(), np.zeros_like(x["p"]), np.zeros_like(x["p"])
    decay = 1 - (lr * wd if decay_times_lr else wd)
    steps = []
    for t, g in enumerate(x["grads"], start=1):
        if decoupled and not decay_after:
            p = p * decay
        elif not decoupled:
            g = g + wd * p  # L2 regularisation folded into the gradient: Adam, not AdamW
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t) if bias_correction and not no_bias_m else m
        v_hat = v / (1 - b2**t) if bias_correction and not no_bias_v else v
        denom = np.sqrt(v_hat + eps) if eps_inside else np.sqrt(v_hat) + eps
        p = p - lr * m_hat / denom
        if decoupled and decay_after:
            p = p * decay
        steps.append((p, m, v))
    return trajectory(x["p"], steps)


def switched(case, decoupled=False, decay_times_lr=False, no_bias=False, **flags):
    """simulate() with every flag meaning "this mistake is made"."""
    return simulate(case, decoupled=not decoupled, decay_times_lr=not decay_times_lr,
                    bias_correction=not no_bias, **flags)


# The classic mistakes as switches: any one, and any two together, are named (diagnose.py).
ADAMW_MISTAKES = Mistakes(switched, {
    "no_bias_m": "the bias correction of m is missing: m_hat = m / (1 - b1**t).",
    "no_bias_v": "the bias correction of v is missing: v_hat = v / (1 - b2**t).",
    "decoupled": "this is Adam with L2 (wd * p added to the gradient); AdamW decays the "
                 "weights directly: p = p * (1 - lr * weight_decay), outside the moments.",
    "decay_times_lr": "the decoupled decay is scaled by the learning rate: "
                      "p * (1 - lr * weight_decay), not p * (1 - weight_decay).",
    "eps_inside": "eps goes outside the square root: m_hat / (sqrt(v_hat) + eps).",
    "betas_swapped": "the betas are swapped: b1 = betas[0] averages g (m), b2 = betas[1] "
                     "averages g^2 (v).",
    "decay_after": "the weight decay comes before the Adam update, on the old p: "
                   "p = p * (1 - lr * weight_decay), then p = p - lr * m_hat / (...).",
    # last: when v's correction is invisible (eps >> v) the specific switches explain more
    "no_bias": "the bias correction is missing: m and v start at zero, so divide by "
               "(1 - b1**t) and (1 - b2**t) (t counts updates from 1).",
})


def adamw_outputs(exercise, functions, case, got):
    """Three calls of the learner's step from m = v = 0, t = 1, 2, 3."""
    x = case.inputs
    p, m, v = x["p"].copy(), np.zeros_like(x["p"]), np.zeros_like(x["p"])
    steps = []
    for t, g in enumerate(x["grads"], start=1):
        out = call(functions["step"], "step", p.copy(), g.copy(), m.copy(), v.copy(), t,
                   x["lr"], x["betas"], x["eps"], x["weight_decay"])
        if not (isinstance(out, tuple) and len(out) == 3):
            raise LearnerError("adamw_step must return the new arrays (p, m, v)")
        p, m, v = (np.asarray(a, dtype=np.float64) for a in out)
        steps.append((p, m, v))
    got.update(trajectory(x["p"], steps))


ADAMW = Exercise(
    name="adamw", title="one AdamW step (decoupled weight decay, bias correction)",
    roles=("step",), functions=("adamw_step",),
    outputs=tuple(trajectory(None, [(None,) * 3] * STEPS)), make_cases=adamw_cases,
    reference=adamw_reference, learner_outputs=adamw_outputs, page="npformer/training/optim.py",
    mistakes=ADAMW_MISTAKES,
    hints=(
        Hint("a division by zero: the bias correction 1 - b**t is 0 for t = 0; "
             "t is the number of this update, counted from 1.",
             lambda c, got, want: not np.isfinite(got["p after step 1"]).all()),
    ))


# ----------------------------------------------------------------- gradient clipping
def clip_cases(rng):
    def case(label, shapes, size, max_norm):
        grads = {f"w{i}": size * rng.standard_normal(shape) for i, shape in enumerate(shapes)}
        return Case(f"{label}, {len(shapes)} tensors, max_norm {max_norm}",
                    {"grads": grads, "max_norm": max_norm}, None)
    return [case("clipped", [(3, 4), (5,), (2, 2)], 1.0, 1.0),
            case("small norm, clipped (the 1e-6 matters)", [(4,), (3, 2)], 0.1, 0.05),
            case("below max_norm: unchanged", [(3,), (2, 3)], 0.1, 10.0),
            case("one tensor", [(6,)], 2.0, 0.5)]


def clip_outputs(exercise, functions, case, got):
    """Call clip_grad_norm on copies; record its return value and the grads afterwards."""
    grads = {k: g.copy() for k, g in case.inputs["grads"].items()}
    norm = call(functions["clip"], "clip_grad_norm", grads, case.inputs["max_norm"])
    got["norm"] = norm
    got["grads afterwards"] = np.concatenate([np.ravel(grads[k]) for k in sorted(grads)])


def clip_reference(case):
    grads = {k: g.copy() for k, g in case.inputs["grads"].items()}
    norm = clip_grad_norm(grads, case.inputs["max_norm"])
    return {"norm": norm,
            "grads afterwards": np.concatenate([grads[k].ravel() for k in sorted(grads)])}


def clip_simulate(case, per_tensor=False, always=False, no_eps=False, norm_after=False,
                  sum_of_norms=False, not_in_place=False):
    grads = {k: g.copy() for k, g in case.inputs["grads"].items()}
    max_norm = case.inputs["max_norm"]
    norms = {k: math.sqrt(float((g * g).sum())) for k, g in grads.items()}
    total = sum(norms.values()) if sum_of_norms else math.sqrt(sum(n * n for n in norms.values()))
    for k, g in grads.items():
        own = norms[k] if per_tensor else total
        coef = max_norm / (own + (0.0 if no_eps else 1e-6))
        if (coef < 1.0 or always) and not not_in_place:
            g *= coef
    if norm_after:
        total = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    return {"norm": total,
            "grads afterwards": np.concatenate([grads[k].ravel() for k in sorted(grads)])}


CLIP = Exercise(
    name="clip", title="gradient clipping by the global norm, in place",
    roles=("clip",), functions=("clip_grad_norm",), outputs=("norm", "grads afterwards"),
    make_cases=clip_cases, reference=clip_reference, learner_outputs=clip_outputs,
    page="npformer/training/optim.py",
    mistakes=Mistakes(clip_simulate, {
        "per_tensor": "the norm is GLOBAL: one norm over all the gradients as one vector, one "
                      "coefficient for all; yours clips each tensor by its own norm.",
        "always": "clip only when the norm is above max_norm (coef < 1); below it the "
                  "gradients stay as they are.",
        "no_eps": "coef = max_norm / (norm + 1e-6), as torch: the 1e-6 is missing.",
        "norm_after": "return the norm BEFORE clipping (what is worth logging).",
        "sum_of_norms": "the global norm is sqrt(sum of the squared norms), not the sum of "
                        "the norms.",
        "not_in_place": "scale the gradients IN PLACE (g *= coef): the optimizer reads these "
                        "very arrays; a new dict is lost.",
    }),
    hints=())
