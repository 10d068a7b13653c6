"""AdamW, gradient clipping and learning-rate schedules: the last stop of the data flow.

The tape has filled `grads`; here `params` change in place (the model holds these
arrays, so they are never rebound). Both are flat dicts with the same dotted keys
and shapes (nn/params.py):

    params["encoder.0.self_attn.W_qkv"]   # (C,3C)
    grads["encoder.0.self_attn.W_qkv"]    # (C,3C)

Every function here works key by key, and each state array (`exp_avg`, `exp_avg_sq`)
has exactly the shape of its parameter.

The AdamW update of one parameter p with gradient g at step t (t from 1):

    p   <- p * (1 - lr * wd)                  # decoupled weight decay
    m   <- b1 * m + (1 - b1) * g              # 1st moment (mean of g)
    v   <- b2 * v + (1 - b2) * g * g          # 2nd moment (mean of g^2)
    p   <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

This is the update of torch.optim.AdamW (Loshchilov & Hutter, "Decoupled Weight Decay
Regularization", https://arxiv.org/abs/1711.05101), in the same order of operations,
so the two agree to rounding.

A learning-rate schedule is a pure function `f(step, **hyper) -> lr` of the 1-based
step (the update about to be made: `opt.t + 1`). Its names are TrainConfig's
--schedule values (SCHEDULES below is the one list):

    schedule = make_schedule("inverse_sqrt", d_model=512, warmup_steps=4000)
    clip_grad_norm(grads, max_norm=1.0)
    opt.step(grads, lr=schedule(opt.t + 1))
    zero_grads(grads)                          # nn/params.py
"""

import functools
import math

import numpy as np

# Added to the total norm before dividing, exactly as torch.nn.utils does, so
# an all-zero gradient gives a finite clipping coefficient.
CLIP_NORM_EPS = 1e-6


def default_no_decay(key, param):
    """True if `param` should be exempt from weight decay.

    Rule: decay only 2-D (or higher) weight matrices whose key contains
    neither "embed" nor "norm". So biases (1-D), layer-norm gamma/beta
    ("norm" in the key, and 1-D anyway) and embedding tables ("embed" in
    the key, although 2-D) are not decayed.

    The PyTorch equivalent is two parameter groups::

        decay    = [p for k, p in named if p.ndim >= 2 and "embed" not in k and "norm" not in k]
        no_decay = [every other p]
        torch.optim.AdamW([{"params": decay, "weight_decay": wd},
                           {"params": no_decay, "weight_decay": 0.0}], ...)
    """
    return param.ndim < 2 or "embed" in key or "norm" in key


def _check_float(name, value, low, high=None):
    """Return `value` as a finite float in [low, high), or raise ValueError naming `name`."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    too_high = high is not None and value >= high
    if not math.isfinite(value) or value < low or too_high:
        upper = f" and < {high}" if high is not None else ""
        raise ValueError(f"{name} must be finite, >= {low}{upper}, got {value!r}")
    return value


class AdamW:
    """AdamW with decoupled weight decay, its state in explicit dicts.

    `params` is the model's flat dict (updated in place); `lr` the rate of a `step`
    called without one; `betas` = (b1, b2) the decay of the moment averages ((0.9,
    0.98), as in "Attention Is All You Need"); `eps` is added to sqrt(v_hat);
    `weight_decay` is applied as p *= 1 - lr*wd to the keys that `no_decay(key, param)`
    does not exempt (default: `default_no_decay`, which names the matching PyTorch
    parameter groups); `lr_scale` = {key: factor} gives a key the rate factor * lr
    (fine-tuning: a smaller rate for a pretrained body; 0 freezes it).
    State (what `state_dict` returns): t, the updates made so far, and exp_avg[key],
    exp_avg_sq[key] (m and v), each with the shape and dtype of params[key].
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.01,
                 no_decay=None, lr_scale=None):
        if not isinstance(params, dict) or not params:
            raise ValueError("params must be a non-empty dict of arrays")
        for key, p in params.items():
            if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
                raise ValueError(f"params[{key!r}] must be a floating-point numpy array")
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (b1, b2), got {betas!r}")

        self.params = params
        self.lr = _check_float("lr", lr, 0.0)
        self.betas = (_check_float("betas[0]", betas[0], 0.0, 1.0),
                      _check_float("betas[1]", betas[1], 0.0, 1.0))
        self.eps = _check_float("eps", eps, 0.0)
        self.weight_decay = _check_float("weight_decay", weight_decay, 0.0)
        if no_decay is None:
            no_decay = default_no_decay

        # Which keys get weight decay; fixed at construction, like param groups.
        self.decay = {key: not no_decay(key, p) for key, p in params.items()}
        # Per-parameter learning-rate multipliers (PyTorch: a param group with its own lr);
        # 0 freezes a parameter: no update and no weight decay.
        self.lr_scale = {key: 1.0 for key in params}
        for key, scale in (lr_scale or {}).items():
            if key not in params:
                raise ValueError(f"lr_scale names {key!r}, which is not a parameter")
            self.lr_scale[key] = _check_float(f"lr_scale[{key!r}]", scale, 0.0)

        self.t = 0
        self.exp_avg = {key: np.zeros_like(p) for key, p in params.items()}
        self.exp_avg_sq = {key: np.zeros_like(p) for key, p in params.items()}

        # One flat scratch buffer per dtype, as large as the largest parameter.
        # Each step reuses a view of it, so a step allocates no arrays.
        largest = {}
        for p in params.values():
            largest[p.dtype] = max(largest.get(p.dtype, 0), p.size)
        self._scratch = {dtype: np.empty(size, dtype=dtype) for dtype, size in largest.items()}

    def decayed_keys(self):
        """The keys that receive weight decay, in params order."""
        return [key for key, decays in self.decay.items() if decays]

    def _check_grads(self, grads):
        missing = [key for key in self.params if key not in grads]
        extra = [key for key in grads if key not in self.params]
        if missing or extra:
            raise ValueError(f"grads keys differ from params: missing {missing}, unexpected {extra}")
        for key, p in self.params.items():
            if grads[key].shape != p.shape:
                raise ValueError(f"grads[{key!r}] has shape {grads[key].shape}, "
                                 f"params[{key!r}] has shape {p.shape}")

    def step(self, grads, lr=None):
        """Apply one AdamW update to every parameter, in place.

        `lr` overrides `self.lr` for this step only (pass the schedule's
        value here); `self.lr` is not changed.
        """
        self._check_grads(grads)
        lr = self.lr if lr is None else _check_float("lr", lr, 0.0)
        b1, b2 = self.betas
        self.t += 1

        # Bias corrections undo the zero initialisation of m and v.
        bias_correction1 = 1.0 - b1 ** self.t
        bias_correction2_sqrt = math.sqrt(1.0 - b2 ** self.t)
        step_size = lr / bias_correction1
        decay_factor = 1.0 - lr * self.weight_decay

        for key, p in self.params.items():
            scale = self.lr_scale[key]
            if scale == 0.0:
                continue  # frozen
            g = grads[key]
            m = self.exp_avg[key]
            v = self.exp_avg_sq[key]
            buf = self._scratch[p.dtype][:p.size].reshape(p.shape)  # view, no copy

            if self.decay[key] and self.weight_decay != 0.0:
                p *= decay_factor if scale == 1.0 else 1.0 - lr * scale * self.weight_decay

            # m <- b1*m + (1-b1)*g, written as m + (1-b1)*(g - m): the same
            # value, in the form torch uses (lerp), so rounding matches closely.
            np.subtract(g, m, out=buf)
            buf *= 1.0 - b1
            m += buf

            v *= b2                                   # v <- b2*v + (1-b2)*g*g
            np.multiply(g, g, out=buf)
            buf *= 1.0 - b2
            v += buf

            np.sqrt(v, out=buf)                       # denom = sqrt(v)/sqrt(bc2) + eps
            buf /= bias_correction2_sqrt
            buf += self.eps
            np.divide(m, buf, out=buf)                # buf = m / denom
            buf *= step_size * scale
            p -= buf                                  # p <- p - lr/bc1 * m/denom

    def state_dict(self):
        """A copy of the optimizer state: ints and plain numpy arrays only.

        Layout: `{"t": int, "exp_avg": {key: array}, "exp_avg_sq": {key: array}}`.
        Save `t` (and the hyperparameters, from your config) as JSON and the
        arrays with `np.savez`, e.g. under keys `"exp_avg." + key`; no pickle.
        """
        return {
            "t": int(self.t),
            "exp_avg": {key: a.copy() for key, a in self.exp_avg.items()},
            "exp_avg_sq": {key: a.copy() for key, a in self.exp_avg_sq.items()},
        }

    def load_state_dict(self, state):
        """Restore a `state_dict`; copies into the existing state arrays."""
        t = state.get("t")
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
            raise ValueError(f"state['t'] must be a non-negative int, got {t!r}")
        for name in ("exp_avg", "exp_avg_sq"):
            loaded = state.get(name)
            if not isinstance(loaded, dict) or set(loaded) != set(self.params):
                raise ValueError(f"state[{name!r}] must be a dict with exactly the params keys")
            for key, a in loaded.items():
                if np.shape(a) != self.params[key].shape:
                    raise ValueError(f"state[{name!r}][{key!r}] has shape {np.shape(a)}, "
                                     f"params[{key!r}] has shape {self.params[key].shape}")
        for name in ("exp_avg", "exp_avg_sq"):
            target = getattr(self, name)
            for key, a in state[name].items():
                target[key][...] = a
        self.t = int(t)


def global_norm(grads):
    """L2 norm of all gradients taken together, as if concatenated into one vector."""
    # Norm of each tensor, then the norm of those norms, as torch does.
    sum_of_squares = 0.0
    for g in grads.values():
        n = float(np.linalg.norm(g.ravel()))
        sum_of_squares += n * n
    return math.sqrt(sum_of_squares)


def clip_grad_norm(grads, max_norm):
    """Scale all grads in place so their global norm is at most `max_norm`.

    Same rule as `torch.nn.utils.clip_grad_norm_`:
    coef = min(1, max_norm / (total_norm + 1e-6)); every grad *= coef.
    Returns the total norm *before* clipping (useful to log).

    One deliberate difference: if the norm is inf or nan the grads are left
    untouched (torch would multiply them by 0 or nan). Check the returned
    value with `math.isfinite` and skip the step.
    """
    max_norm = _check_float("max_norm", max_norm, 0.0)
    if max_norm == 0.0:
        raise ValueError("max_norm must be > 0, got 0.0")
    total_norm = global_norm(grads)
    coef = max_norm / (total_norm + CLIP_NORM_EPS)
    if coef < 1.0:                 # False for nan/inf norms too
        for g in grads.values():
            g *= coef
    return total_norm


def _check_int(name, value, low):
    """Return `value` as an int, or raise ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return int(value)


def inverse_sqrt_warmup(step, d_model, warmup_steps, scale=1.0):
    """The "Attention Is All You Need" schedule (section 5.3).

    lr = scale * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5)

    Linear rise for step <= warmup_steps, peak scale*(d_model*warmup_steps)^-0.5
    at step == warmup_steps, then decay as 1/sqrt(step). `step` from 1.
    """
    step = _check_int("step", step, 1)
    d_model = _check_int("d_model", d_model, 1)
    warmup_steps = _check_int("warmup_steps", warmup_steps, 1)
    scale = _check_float("scale", scale, 0.0)
    return scale * d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)


def warmup_cosine(step, peak_lr, warmup_steps, total_steps, min_lr=0.0):
    """Linear warmup to `peak_lr`, then cosine decay to `min_lr`.

    step <= warmup_steps:          lr = peak_lr * step / warmup_steps
    warmup_steps < step <= total:  lr = min_lr + (peak_lr - min_lr) * (1 + cos(pi * r)) / 2,
                                   r = (step - warmup_steps) / (total_steps - warmup_steps)
    step > total_steps:            lr = min_lr

    `step` from 1, so lr == peak_lr at step == warmup_steps and
    lr == min_lr at step == total_steps.
    """
    step = _check_int("step", step, 1)
    peak_lr = _check_float("peak_lr", peak_lr, 0.0)
    warmup_steps = _check_int("warmup_steps", warmup_steps, 0)
    total_steps = _check_int("total_steps", total_steps, 1)
    min_lr = _check_float("min_lr", min_lr, 0.0)
    if total_steps < warmup_steps:
        raise ValueError(f"total_steps ({total_steps}) must be >= warmup_steps ({warmup_steps})")
    if min_lr > peak_lr:
        raise ValueError(f"min_lr ({min_lr}) must be <= peak_lr ({peak_lr})")

    if step <= warmup_steps:
        return peak_lr * step / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)  # in (0, 1)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def constant_with_warmup(step, peak_lr, warmup_steps):
    """Linear warmup to `peak_lr` over `warmup_steps`, then constant. `step` from 1."""
    step = _check_int("step", step, 1)
    peak_lr = _check_float("peak_lr", peak_lr, 0.0)
    warmup_steps = _check_int("warmup_steps", warmup_steps, 0)
    if step <= warmup_steps:
        return peak_lr * step / warmup_steps
    return peak_lr


# The schedules by name: TrainConfig's --schedule values (training/config.py reads them here).
SCHEDULES = {
    "warmup_cosine": warmup_cosine,
    "inverse_sqrt": inverse_sqrt_warmup,
    "constant": constant_with_warmup,
}


def make_schedule(name, **kw):
    """Return `step -> lr` for the schedule `name` with hyperparameters `kw`.

    The hyperparameters are checked now (by evaluating step 1), so a bad
    config fails before training starts.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid names: {sorted(SCHEDULES)}")
    schedule = functools.partial(SCHEDULES[name], **kw)
    schedule(1)
    return schedule
