"""Tests for npformer.training.optim: AdamW, gradient clipping, learning-rate schedules.

PyTorch, where installed, is the oracle for AdamW and clip_grad_norm; the
schedule tests derive their expected values by hand from the formulas.
"""

import json
import math
import tracemalloc

import numpy as np
import pytest
from helpers import assert_close

from npformer.training.optim import (SCHEDULES, AdamW, clip_grad_norm, constant_with_warmup,
                                     default_no_decay, global_norm, inverse_sqrt_warmup,
                                     make_schedule, warmup_cosine)
from npformer.nn.params import zero_grads

# Relative error bound when comparing float64 AdamW with torch over N_STEPS
# steps: both do the same operations in the same order, so only a few ulps of
# rounding separate them.
RTOL_F64 = 1e-12
# float32 run compared with the float64 run of the same problem.
RTOL_F32 = 1e-5
N_STEPS = 20

# A miniature parameter dict with one key of every kind the model has.
SHAPES = {
    "src_embed.W": (11, 8),                  # embedding: 2-D but not decayed
    "tgt_embed.W": (13, 8),
    "encoder.0.self_attn.W_q": (8, 8),       # weight matrix: decayed
    "encoder.0.self_attn.b_q": (8,),         # bias: not decayed
    "encoder.0.norm1.gamma": (8,),           # layer norm: not decayed
    "encoder.0.norm1.beta": (8,),
    "encoder.0.ffn.W1": (8, 16),
    "encoder.0.ffn.b1": (16,),
    "decoder.norm.gamma": (8,),
    "generator.W": (8, 13),
}
DECAYED = {"encoder.0.self_attn.W_q", "encoder.0.ffn.W1", "generator.W"}

HYPER = dict(lr=1e-2, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.1)


def random_params(rng, dtype=np.float64):
    return {key: rng.standard_normal(shape).astype(dtype) for key, shape in SHAPES.items()}


def random_grads_sequence(rng, n_steps, dtype=np.float64):
    return [{key: rng.standard_normal(shape).astype(dtype) for key, shape in SHAPES.items()}
            for _ in range(n_steps)]


def lr_at(step):
    """A varying learning rate so the per-step lr override is exercised."""
    return HYPER["lr"] * (0.5 + 0.5 * math.cos(step))


# ----------------------------------------------------------------------------
# AdamW
# ----------------------------------------------------------------------------

def test_default_no_decay_rule():
    decayed = {key for key, shape in SHAPES.items()
               if not default_no_decay(key, np.zeros(shape))}
    assert decayed == DECAYED

    params = random_params(np.random.default_rng(0))
    opt = AdamW(params, **HYPER)
    assert set(opt.decayed_keys()) == DECAYED


@pytest.mark.parametrize("foreach", [False, True])
def test_adamw_matches_torch(foreach):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    params = random_params(rng)
    grads_seq = random_grads_sequence(rng, N_STEPS)

    torch_params = {key: torch.tensor(p, requires_grad=True) for key, p in params.items()}
    groups = [
        {"params": [torch_params[k] for k in SHAPES if k in DECAYED],
         "weight_decay": HYPER["weight_decay"]},
        {"params": [torch_params[k] for k in SHAPES if k not in DECAYED],
         "weight_decay": 0.0},
    ]
    torch_opt = torch.optim.AdamW(groups, lr=HYPER["lr"], betas=HYPER["betas"],
                                  eps=HYPER["eps"], foreach=foreach)
    opt = AdamW(params, **HYPER)

    for step, grads in enumerate(grads_seq, start=1):
        for key, g in grads.items():
            torch_params[key].grad = torch.tensor(g)
        for group in torch_opt.param_groups:
            group["lr"] = lr_at(step)
        torch_opt.step()
        opt.step(grads, lr=lr_at(step))

    assert opt.t == N_STEPS
    for key in SHAPES:
        assert_close(key, params[key], torch_params[key].detach().numpy(), RTOL_F64)
        state = torch_opt.state[torch_params[key]]
        # m is a running mean of signed gradients and can cancel to near 0,
        # where elementwise relative error is meaningless: measure it against
        # the tensor's largest entry instead. v > 0 has no such cancellation.
        m_torch = state["exp_avg"].numpy()
        assert_close(key + " exp_avg", opt.exp_avg[key], m_torch, rtol=0,
                     atol=RTOL_F64 * np.abs(m_torch).max())
        assert_close(key + " exp_avg_sq", opt.exp_avg_sq[key], state["exp_avg_sq"].numpy(),
                     RTOL_F64)


def test_weight_decay_only_on_decayed_keys():
    # With zero gradients m = v = 0, so the Adam part of the update is exactly
    # 0 / (0 + eps) = 0 and only the decoupled decay can move a parameter.
    params = random_params(np.random.default_rng(2))
    before = {key: p.copy() for key, p in params.items()}
    zero = {key: np.zeros_like(p) for key, p in params.items()}
    opt = AdamW(params, **HYPER)
    opt.step(zero, lr=0.5)

    factor = 1.0 - 0.5 * HYPER["weight_decay"]
    for key in SHAPES:
        if key in DECAYED:
            np.testing.assert_array_equal(params[key], before[key] * factor, err_msg=key)
        else:
            np.testing.assert_array_equal(params[key], before[key], err_msg=key)


def test_custom_no_decay_callable():
    params = random_params(np.random.default_rng(3))
    before = {key: p.copy() for key, p in params.items()}
    zero = {key: np.zeros_like(p) for key, p in params.items()}
    # Decay everything except the generator.
    opt = AdamW(params, **HYPER, no_decay=lambda key, p: key.startswith("generator"))
    opt.step(zero)
    np.testing.assert_array_equal(params["generator.W"], before["generator.W"])
    np.testing.assert_array_equal(params["encoder.0.norm1.gamma"],
                                  before["encoder.0.norm1.gamma"] * (1 - HYPER["lr"] * 0.1))


def test_step_is_in_place_and_float32_safe():
    rng = np.random.default_rng(4)
    params64 = random_params(rng)
    params32 = {key: p.astype(np.float32) for key, p in params64.items()}
    grads_seq = random_grads_sequence(rng, N_STEPS)
    originals = dict(params32)  # same array objects

    opt64 = AdamW(params64, **HYPER)
    opt32 = AdamW(params32, **HYPER)
    for step, grads in enumerate(grads_seq, start=1):
        opt64.step(grads, lr=lr_at(step))
        opt32.step({k: g.astype(np.float32) for k, g in grads.items()}, lr=lr_at(step))

    for key in SHAPES:
        assert params32[key] is originals[key], f"{key}: array was rebound, not updated in place"
        assert params32[key].dtype == np.float32, f"{key}: dtype {params32[key].dtype}"
        assert opt32.exp_avg[key].dtype == np.float32
        assert opt32.exp_avg_sq[key].dtype == np.float32
        # Parameters are O(1) here, so an absolute bound is the meaningful one.
        np.testing.assert_allclose(params32[key], params64[key], rtol=0, atol=RTOL_F32,
                                   err_msg=key)


def test_step_allocates_no_parameter_sized_arrays():
    rng = np.random.default_rng(5)
    params = {"big.W": rng.standard_normal((512, 512)).astype(np.float32),
              "big.b": rng.standard_normal(512).astype(np.float32)}
    grads = {key: rng.standard_normal(p.shape).astype(np.float32) for key, p in params.items()}
    opt = AdamW(params)
    opt.step(grads)  # first step outside the measurement

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        opt.step(grads)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One temporary of the weight matrix would be 1 MiB.
    assert peak < params["big.W"].nbytes / 10, f"step allocated {peak} bytes at peak"


def test_state_dict_round_trip_through_npz_and_json(tmp_path):
    rng = np.random.default_rng(6)
    params_a = random_params(rng)
    params_b = {key: p.copy() for key, p in params_a.items()}
    grads_seq = random_grads_sequence(rng, N_STEPS)
    half = N_STEPS // 2

    opt_a = AdamW(params_a, **HYPER)
    opt_b = AdamW(params_b, **HYPER)
    for grads in grads_seq[:half]:
        opt_a.step(grads)
        opt_b.step(grads)

    # Save A's state the way a checkpoint does: ints as JSON, arrays as npz.
    state = opt_a.state_dict()
    (tmp_path / "optim.json").write_text(json.dumps({"t": state["t"]}))
    np.savez(tmp_path / "optim.npz",
             **{f"exp_avg.{k}": a for k, a in state["exp_avg"].items()},
             **{f"exp_avg_sq.{k}": a for k, a in state["exp_avg_sq"].items()})

    # Scramble B's state, then restore it from disk.
    opt_b.t = 999
    for key in SHAPES:
        opt_b.exp_avg[key][...] = 7.0
    with np.load(tmp_path / "optim.npz", allow_pickle=False) as npz:
        loaded = {
            "t": json.loads((tmp_path / "optim.json").read_text())["t"],
            "exp_avg": {k: npz[f"exp_avg.{k}"] for k in SHAPES},
            "exp_avg_sq": {k: npz[f"exp_avg_sq.{k}"] for k in SHAPES},
        }
    opt_b.load_state_dict(loaded)
    assert opt_b.t == half

    for grads in grads_seq[half:]:
        opt_a.step(grads)
        opt_b.step(grads)
    for key in SHAPES:
        np.testing.assert_array_equal(params_b[key], params_a[key], err_msg=key)


def test_state_dict_is_a_copy():
    params = random_params(np.random.default_rng(7))
    opt = AdamW(params, **HYPER)
    grads = random_grads_sequence(np.random.default_rng(8), 1)[0]
    opt.step(grads)
    state = opt.state_dict()
    saved = state["exp_avg"]["generator.W"].copy()
    opt.step(grads)
    np.testing.assert_array_equal(state["exp_avg"]["generator.W"], saved)
    assert state["t"] == 1 and isinstance(state["t"], int)


def test_load_state_dict_rejects_mismatches():
    params = random_params(np.random.default_rng(9))
    opt = AdamW(params, **HYPER)
    good = opt.state_dict()

    missing = dict(good, exp_avg={k: a for k, a in good["exp_avg"].items() if k != "generator.W"})
    with pytest.raises(ValueError, match="exp_avg"):
        opt.load_state_dict(missing)

    bad_shape = dict(good, exp_avg_sq=dict(good["exp_avg_sq"], **{"generator.W": np.zeros(3)}))
    with pytest.raises(ValueError, match="generator.W"):
        opt.load_state_dict(bad_shape)

    with pytest.raises(ValueError, match="t"):
        opt.load_state_dict(dict(good, t=-1))


def test_step_rejects_mismatched_grads():
    params = random_params(np.random.default_rng(10))
    opt = AdamW(params, **HYPER)
    grads = {key: np.zeros_like(p) for key, p in params.items()}

    del grads["generator.W"]
    with pytest.raises(ValueError, match="generator.W"):
        opt.step(grads)

    grads["generator.W"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="generator.W"):
        opt.step(grads)
    assert opt.t == 0, "a rejected step must not advance the step counter"


@pytest.mark.parametrize("kwargs, name", [
    (dict(lr=-1.0), "lr"),
    (dict(betas=(1.0, 0.98)), r"betas\[0\]"),
    (dict(betas=(0.9, -0.1)), r"betas\[1\]"),
    (dict(eps=-1e-9), "eps"),
    (dict(weight_decay=float("nan")), "weight_decay"),
])
def test_adamw_bad_hyperparameters(kwargs, name):
    params = random_params(np.random.default_rng(11))
    with pytest.raises(ValueError, match=name):
        AdamW(params, **kwargs)


# ----------------------------------------------------------------------------
# Gradient utilities
# ----------------------------------------------------------------------------

def test_global_norm_is_norm_of_concatenation():
    grads = random_grads_sequence(np.random.default_rng(12), 1)[0]
    flat = np.concatenate([g.ravel() for g in grads.values()])
    assert global_norm(grads) == pytest.approx(math.sqrt(np.sum(flat * flat)), rel=1e-14)


def test_clip_grad_norm_scales_to_max_norm():
    grads = random_grads_sequence(np.random.default_rng(13), 1)[0]
    before = {key: g.copy() for key, g in grads.items()}
    norm = global_norm(grads)

    returned = clip_grad_norm(grads, max_norm=norm / 4)
    assert returned == norm, "must return the norm before clipping"
    assert global_norm(grads) == pytest.approx(norm / 4, rel=1e-6)
    coef = (norm / 4) / (norm + 1e-6)
    for key in SHAPES:
        np.testing.assert_allclose(grads[key], before[key] * coef, rtol=1e-15, err_msg=key)


def test_clip_grad_norm_leaves_small_grads_alone():
    grads = random_grads_sequence(np.random.default_rng(14), 1)[0]
    before = {key: g.copy() for key, g in grads.items()}
    clip_grad_norm(grads, max_norm=2 * global_norm(grads))
    for key in SHAPES:
        np.testing.assert_array_equal(grads[key], before[key], err_msg=key)


@pytest.mark.parametrize("ratio", [0.25, 3.0])
def test_clip_grad_norm_matches_torch(ratio):
    torch = pytest.importorskip("torch")
    grads = random_grads_sequence(np.random.default_rng(15), 1)[0]
    tensors = {key: torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
               for key, g in grads.items()}
    for key, t in tensors.items():
        t.grad = torch.tensor(grads[key])
    max_norm = ratio * global_norm(grads)

    torch_norm = torch.nn.utils.clip_grad_norm_(list(tensors.values()), max_norm)
    norm = clip_grad_norm(grads, max_norm)

    assert norm == pytest.approx(torch_norm.item(), rel=RTOL_F64)
    for key in SHAPES:
        assert_close(key + " grad", grads[key], tensors[key].grad.numpy(), RTOL_F64)


def test_clip_grad_norm_bad_max_norm():
    grads = {"w": np.ones(3)}
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="max_norm"):
            clip_grad_norm(grads, bad)


def test_zero_grads_in_place():
    grads = random_grads_sequence(np.random.default_rng(16), 1)[0]
    originals = dict(grads)
    zero_grads(grads)
    for key in SHAPES:
        assert grads[key] is originals[key]
        assert not grads[key].any(), f"{key} not zeroed"


# ----------------------------------------------------------------------------
# Learning-rate schedules
# ----------------------------------------------------------------------------

def test_inverse_sqrt_warmup_known_values():
    d_model, warmup = 512, 4000
    # Peak at step == warmup: 512^-0.5 * 4000^-0.5 = 1 / sqrt(2_048_000).
    peak = 1 / math.sqrt(2_048_000)
    assert inverse_sqrt_warmup(4000, d_model, warmup) == pytest.approx(peak, rel=1e-12)
    # Step 1: 512^-0.5 * 4000^-1.5 = peak / 4000.
    assert inverse_sqrt_warmup(1, d_model, warmup) == pytest.approx(peak / 4000, rel=1e-12)
    # Linear on the way up: half the peak at half the warmup.
    assert inverse_sqrt_warmup(2000, d_model, warmup) == pytest.approx(peak / 2, rel=1e-12)
    # 1/sqrt(step) on the way down: half the peak at 4x the warmup.
    assert inverse_sqrt_warmup(16000, d_model, warmup) == pytest.approx(peak / 2, rel=1e-12)
    # scale multiplies.
    assert inverse_sqrt_warmup(4000, d_model, warmup, scale=2.0) == pytest.approx(2 * peak)


def test_inverse_sqrt_warmup_shape():
    lrs = [inverse_sqrt_warmup(s, 64, 100) for s in range(1, 1001)]
    rising, falling = lrs[:100], lrs[99:]
    assert all(a < b for a, b in zip(rising, rising[1:]))
    assert all(a > b for a, b in zip(falling, falling[1:]))
    assert max(lrs) == lrs[99]


def test_warmup_cosine_known_values():
    peak, low = 1e-3, 1e-5
    kw = dict(peak_lr=peak, warmup_steps=10, total_steps=110, min_lr=low)
    assert warmup_cosine(1, **kw) == pytest.approx(peak / 10, rel=1e-12)
    assert warmup_cosine(5, **kw) == pytest.approx(peak / 2, rel=1e-12)
    assert warmup_cosine(10, **kw) == pytest.approx(peak, rel=1e-12)
    # Halfway through the cosine (step 60): cos(pi/2) = 0, so the midpoint.
    assert warmup_cosine(60, **kw) == pytest.approx((peak + low) / 2, rel=1e-12)
    # A quarter through (step 35): min + (peak-min) * (1 + cos(pi/4)) / 2.
    expected = low + (peak - low) * (1 + math.sqrt(0.5)) / 2
    assert warmup_cosine(35, **kw) == pytest.approx(expected, rel=1e-12)
    assert warmup_cosine(110, **kw) == low
    assert warmup_cosine(500, **kw) == low


def test_warmup_cosine_shape():
    kw = dict(peak_lr=1.0, warmup_steps=20, total_steps=200, min_lr=0.1)
    lrs = [warmup_cosine(s, **kw) for s in range(1, 251)]
    rising, falling = lrs[:20], lrs[19:200]
    assert all(a < b for a, b in zip(rising, rising[1:]))
    assert all(a > b for a, b in zip(falling, falling[1:]))
    assert max(lrs) == lrs[19] == 1.0
    assert min(lrs[19:]) == lrs[199] == 0.1


def test_warmup_cosine_without_warmup():
    # warmup_steps=0 starts on the cosine; it must not divide by zero.
    assert warmup_cosine(1, peak_lr=1.0, warmup_steps=0, total_steps=2) == pytest.approx(0.5)


def test_constant_with_warmup():
    assert constant_with_warmup(1, peak_lr=0.1, warmup_steps=4) == pytest.approx(0.025)
    assert constant_with_warmup(4, peak_lr=0.1, warmup_steps=4) == pytest.approx(0.1)
    assert constant_with_warmup(10_000, peak_lr=0.1, warmup_steps=4) == 0.1
    assert constant_with_warmup(1, peak_lr=0.1, warmup_steps=0) == 0.1


@pytest.mark.parametrize("fn, kwargs, name", [
    (inverse_sqrt_warmup, dict(step=0, d_model=512, warmup_steps=4000), "step"),
    (inverse_sqrt_warmup, dict(step=1.5, d_model=512, warmup_steps=4000), "step"),
    (inverse_sqrt_warmup, dict(step=1, d_model=0, warmup_steps=4000), "d_model"),
    (inverse_sqrt_warmup, dict(step=1, d_model=512, warmup_steps=0), "warmup_steps"),
    (inverse_sqrt_warmup, dict(step=1, d_model=512, warmup_steps=10, scale=-1), "scale"),
    (warmup_cosine, dict(step=0, peak_lr=1.0, warmup_steps=1, total_steps=10), "step"),
    (warmup_cosine, dict(step=1, peak_lr=-1.0, warmup_steps=1, total_steps=10), "peak_lr"),
    (warmup_cosine, dict(step=1, peak_lr=1.0, warmup_steps=-1, total_steps=10), "warmup_steps"),
    (warmup_cosine, dict(step=1, peak_lr=1.0, warmup_steps=20, total_steps=10), "total_steps"),
    (warmup_cosine, dict(step=1, peak_lr=1.0, warmup_steps=1, total_steps=10, min_lr=2.0),
     "min_lr"),
    (constant_with_warmup, dict(step=1, peak_lr="fast", warmup_steps=1), "peak_lr"),
    (constant_with_warmup, dict(step=1, peak_lr=1.0, warmup_steps=True), "warmup_steps"),
])
def test_schedule_bad_args(fn, kwargs, name):
    with pytest.raises(ValueError, match=name):
        fn(**kwargs)


def test_make_schedule():
    kw = dict(peak_lr=1e-3, warmup_steps=10, total_steps=110)
    schedule = make_schedule("warmup_cosine", **kw)
    for step in (1, 10, 37, 110, 111):
        assert schedule(step) == warmup_cosine(step, **kw)
    assert set(SCHEDULES) == {"inverse_sqrt", "warmup_cosine", "constant"}  # TrainConfig's names


def test_make_schedule_errors():
    with pytest.raises(ValueError, match="constant.*inverse_sqrt.*warmup_cosine"):
        make_schedule("linear", peak_lr=1.0)
    # Bad hyperparameters fail at creation, not at step 1 of training.
    with pytest.raises(ValueError, match="warmup_steps"):
        make_schedule("inverse_sqrt", d_model=512, warmup_steps=0)
    with pytest.raises(TypeError):
        make_schedule("constant", peak_lr=1.0)  # warmup_steps missing
