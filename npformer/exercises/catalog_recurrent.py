"""The exercise for the recurrent layer: an Elman RNN, backpropagation through time.

  a_t = x_t W_x + h_{t-1} W_h + b        h_t = tanh(a_t),   h_0 given

Reference: npformer/nn/layers/recurrent.py's formulas in plain NumPy float64 (a test
checks it against the layer). The classic BPTT mistakes are switches of that
reference (any two together are named too): the gradient through h_{t-1} never
carried to the earlier steps, tanh' taken at the pre-activation (1 - a_t^2) or from
the wrong step (1 - h_{t-1}^2), dW_h built with h_t instead of h_{t-1}, dh_0
missing. For partial versions, outputs name their parts for the structural diagnosis
(npformer/exercises/diagnose.py): in dx, the positions before the last (the only ones
a carried gradient reaches); dh_0's one term da_1 W_h^T (W_h^T left out or not
transposed); dW_h's first step, which must pair da_1 with h_0.

Shapes: B batch, T sequence length, C hidden size (= the input width here).
"""
import math

import numpy as np

from .checker import Case, Exercise
from .diagnose import Mistakes, Region, Structure, Term


def randn(rng, *shape):
    return rng.standard_normal(shape)


def rnn_cases(rng):
    def case(label, B, T, C, h0_scale=0.5):
        inputs = {"x": randn(rng, B, T, C), "h0": h0_scale * randn(rng, B, C),
                  "W_x": randn(rng, C, C) / math.sqrt(C),
                  "W_h": 0.9 * randn(rng, C, C) / math.sqrt(C),  # no vanishing in a few steps
                  "b": 0.3 * randn(rng, C)}
        return Case(f"{label}, x {(B, T, C)}", inputs, randn(rng, B, T, C))
    return [case("a batch, h0 given", 2, 4, 3),
            case("one step (T = 1): no chain yet", 3, 1, 2),
            case("a long chain, h0 zero", 1, 7, 2, h0_scale=0.0),
            case("odd sizes", 2, 3, 5)]


def rnn_simulate(case, no_carry=False, tanh_pre=False, tanh_prev=False, dWh_ht=False,
                 no_dh0=False):
    """The layer's forward and BPTT, in NumPy float64; each flag True = that mistake."""
    x, h0, W_x, W_h, b = (case.inputs[k] for k in ("x", "h0", "W_x", "W_h", "b"))
    dh = case.dout  # (B,T,C)
    B, T, C = x.shape
    a = np.empty((B, T, C))  # the pre-activations, for the tanh_pre mistake only
    h = np.empty((B, T, C))
    prev = h0  # (B,C)
    for t in range(T):
        a[:, t] = x[:, t] @ W_x + prev @ W_h + b  # (B,C)
        h[:, t] = prev = np.tanh(a[:, t])
    h_prev = np.concatenate([h0[:, None], h[:, :-1]], axis=1)  # (B,T,C): h_{t-1} at every t
    slope = 1.0 - (a if tanh_pre else h_prev if tanh_prev else h) ** 2  # (B,T,C) tanh'
    da, carry = backward_steps(dh, slope, W_h, carried=not no_carry)
    da2 = da.reshape(B * T, C)  # (B,T,C) -> (B*T,C)
    state = h if dWh_ht else h_prev  # what step t multiplied by W_h
    return {"h": h, "dx": (da2 @ W_x.T).reshape(B, T, C),
            "dh0": np.zeros((B, C)) if no_dh0 else carry,
            "dW_x": x.reshape(B * T, C).T @ da2, "dW_h": state.reshape(B * T, C).T @ da2,
            "db": da2.sum(axis=0)}


RNN_MISTAKES = Mistakes(rnn_simulate, {
    "no_carry": "the gradient through h_{t-1} is not carried back: h_t feeds step t + 1 too, "
                "so dh_t = dy_t + da_{t+1} W_h^T; walk t backwards and add the carry from "
                "step t + 1 before the tanh' of step t.",
    "tanh_pre": "tanh' must be taken from the state: 1 - h_t^2 with h_t = tanh(a_t); yours "
                "is 1 - a_t^2, the pre-activation squared.",
    "tanh_prev": "tanh' of step t is 1 - h_t^2, of that step's OWN output h_t; yours takes it "
                 "from h_{t-1}, the step before.",
    "dWh_ht": "dW_h pairs da_t with h_{t-1}, the state that step t multiplied by W_h (h_0 at "
              "the first step): dW_h = sum_t h_{t-1}^T da_t, not h_t^T da_t.",
    "no_dh0": "dh0 is missing: h_0 feeds the first step, so dh0 = da_1 W_h^T, the carry left "
              "after the backward loop.",
})


def rnn_structure(case, want):
    """The parts of each output that the structural diagnosis may name."""
    h0, W_h, h = case.inputs["h0"], case.inputs["W_h"], want["h"]
    B, T, C = h.shape
    da, _ = backward_steps(case.dout, 1.0 - h**2, W_h)  # (B,T,C) the right da_t
    h_prev = np.concatenate([h0[:, None], h[:, :-1]], axis=1)  # (B,T,C): h_{t-1} at every t
    first_wrong = h_prev.copy()
    first_wrong[:, 0] = h[:, 0]  # h_1 where h_0 belongs

    def dW_h_with(states):  # sum_t states_t^T da_t: (C,B*T) @ (B*T,C) -> (C,C)
        return states.reshape(B * T, C).T @ da.reshape(B * T, C)
    before_last = (np.arange(T) < T - 1)[None, :, None]  # (1,T,1)
    carried = Region("the positions before the last: only they receive a gradient from a "
                     "later step (dh_t = dy_t + da_{t+1} W_h^T), so the carry back through "
                     "h_{t-1} to the earlier steps is wrong or missing", before_last)
    return {"dx": Structure(regions=(carried,)),
            "dh0": Structure(terms=(Term("da_1 W_h^T", want["dh0"], variants=(
                ("dh0 = da_1 W_h^T: yours leaves out W_h^T (h_0 reaches a_1 through W_h)",
                 da[:, 0]),
                ("dh0 = da_1 W_h^T: W_h must be transposed", da[:, 0] @ W_h))),)),
            "dW_h": Structure(terms=(Term("sum_t h_{t-1}^T da_t", want["dW_h"], variants=(
                ("dW_h must pair da_t with h_{t-1} (h_0 at the first step): yours uses h_t",
                 dW_h_with(h)),
                ("dW_h at the first step must use h_0, the initial state",
                 dW_h_with(first_wrong)))),))}


def backward_steps(dh, slope, W_h, carried=True):
    """The BPTT walk: (da (B,T,C), what the first step sends back to h_0 (B,C)).

    da_t = (dh_t + da_{t+1} W_h^T) * slope_t, the carry left out when not `carried`.
    """
    da = np.empty_like(dh)  # (B,T,C)
    carry = np.zeros_like(dh[:, 0])  # (B,C) da_{t+1} W_h^T
    for t in reversed(range(dh.shape[1])):
        da[:, t] = (dh[:, t] + (carry if carried else 0.0)) * slope[:, t]
        carry = da[:, t] @ W_h.T  # (B,C)
    return da, carry


RNN = Exercise(
    name="rnn", title="an Elman RNN h_t = tanh(x_t W_x + h_{t-1} W_h + b): backprop through time",
    roles=("forward", "backward"), functions=("rnn_forward", "rnn_backward"),
    outputs=("h", "dx", "dh0", "dW_x", "dW_h", "db"), make_cases=rnn_cases,
    reference=lambda case: rnn_simulate(case),
    wrt=(("x", "dx"), ("h0", "dh0"), ("W_x", "dW_x"), ("W_h", "dW_h"), ("b", "db")),
    page="npformer/nn/layers/recurrent.py (its docstring derives BPTT)",
    mistakes=RNN_MISTAKES, structure=rnn_structure, hints=())
