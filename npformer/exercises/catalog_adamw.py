"""The AdamW exercise: one optimizer step.

It is checked over three steps against npformer.optim.AdamW (the same update as
torch.optim.AdamW).

Shapes: every array has the parameter's shape.
"""

import numpy as np

from ..optim import AdamW
from .checker import Case, Exercise, Hint, LearnerError, call, matches

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


def simulate(case, bias_correction=True, decoupled=True, decay_times_lr=True, eps_inside=False):
    """AdamW with one of the classic mistakes switched on."""
    x = case.inputs
    b1, b2 = x["betas"]
    lr, eps, wd = x["lr"], x["eps"], x["weight_decay"]
    p, m, v = x["p"].copy(), np.zeros_like(x["p"]), np.zeros_like(x["p"])
    steps = []
    for t, g in enumerate(x["grads"], start=1):
        if decoupled:
            p = p * (1 - (lr * wd if decay_times_lr else wd))
        else:
            g = g + wd * p  # L2 regularisation folded into the gradient: Adam, not AdamW
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t) if bias_correction else m
        v_hat = v / (1 - b2**t) if bias_correction else v
        denom = np.sqrt(v_hat + eps) if eps_inside else np.sqrt(v_hat) + eps
        p = p - lr * m_hat / denom
        steps.append((p, m, v))
    return trajectory(x["p"], steps)


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


def shows(mistake):
    """A hint test: the learner's trajectory equals the simulated mistake's."""
    def test(case, got, want):
        wrong = simulate(case, **mistake)
        return all(matches(got[k], wrong[k]) for k in want) and not all(
            matches(want[k], wrong[k]) for k in want)
    return test


ADAMW = Exercise(
    name="adamw", title="one AdamW step (decoupled weight decay, bias correction)",
    roles=("step",), functions=("adamw_step",),
    outputs=tuple(trajectory(None, [(None,) * 3] * STEPS)), make_cases=adamw_cases,
    reference=adamw_reference, learner_outputs=adamw_outputs, page="npformer/optim.py",
    hints=(
        Hint("the bias correction is missing: m and v start at zero, so divide by "
             "(1 - b1**t) and (1 - b2**t) (t counts updates from 1).",
             shows(dict(bias_correction=False))),
        Hint("this is Adam with L2 (wd * p added to the gradient); AdamW decays the "
             "weights directly: p = p * (1 - lr * weight_decay), outside the moments.",
             shows(dict(decoupled=False))),
        Hint("the decoupled decay is scaled by the learning rate: p * (1 - lr * weight_decay), "
             "not p * (1 - weight_decay).",
             shows(dict(decay_times_lr=False))),
        Hint("eps goes outside the square root: m_hat / (sqrt(v_hat) + eps).",
             shows(dict(eps_inside=True))),
        Hint("a division by zero: the bias correction 1 - b**t is 0 for t = 0; "
             "t is the number of this update, counted from 1.",
             lambda c, got, want: not np.isfinite(got["p after step 1"]).all()),
    ))
