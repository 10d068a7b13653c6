"""A recurrent layer (Elman RNN, tanh): the sequential model that transformers replaced.

Shapes: B batch, T sequence length, C hidden size (= the input width here).

  a_t = x_t W_x + h_{t-1} W_h + b        h_t = tanh(a_t),   h_0 given (zeros)

Position t needs h_{t-1}, so the T steps form a chain of T dependent matrix
products, in training as in generation. Only the input half x_t W_x has no
recurrence: it is computed for all positions in one product, before the loop,
as every practical RNN implementation does.

Backward through time (BPTT) walks the chain in reverse. With da_t = dL/da_t:

  dh_t  = dy_t + da_{t+1} W_h^T         (h_t feeds the output and the next step)
  da_t  = dh_t * (1 - h_t^2)            (tanh' = 1 - tanh^2)
  dW_h  = sum_t h_{t-1}^T da_t,  dW_x = sum_t x_t^T da_t,  db = sum_t da_t
  dx_t  = da_t W_x^T,            dh_0 = da_1 W_h^T

Only the dh_t recursion is sequential; the weight gradients and dx are one
product each over all B*T rows once every da_t is known.
Padding needs no mask: padding comes after a row's real tokens, and a causal
recurrence never lets a later position change an earlier one.
"""
from typing import NamedTuple

import numpy as np

from .. import kernels


class RNNCache(NamedTuple):
    x: np.ndarray  # (B,T,C) the inputs, for dW_x
    h0: np.ndarray  # (B,C) the initial state, for dW_h at t = 1
    h: np.ndarray  # (B,T,C) every state; tanh' is recomputed from it (1 - h^2)
    W_x: np.ndarray  # (C,C) for dx
    W_h: np.ndarray  # (C,C) for the recursion and dh_0


def rnn_forward(x, h0, W_x, W_h, b):
    """All states of an Elman RNN over a sequence.

    Shapes: x (B,T,C), h0 (B,C), W_x (C,C), W_h (C,C), b (C,) -> h (B,T,C)
    """
    B, T, C = x.shape
    a_in = kernels.matmul(x.reshape(B * T, C), W_x).reshape(B, T, C)  # (B*T,C) @ (C,C): at once
    a_in += b
    h = np.empty_like(a_in)  # (B,T,C)
    prev = h0  # (B,C)
    for t in range(T):  # the chain: step t waits for step t-1
        prev = np.tanh(a_in[:, t] + kernels.matmul(prev, W_h))  # (B,C) @ (C,C) -> (B,C)
        h[:, t] = prev
    return h, RNNCache(x, h0, h, W_x, W_h)


def rnn_backward(dh, cache):
    """Backpropagation through time.

    Shapes: dh (B,T,C) -> dx (B,T,C), dh0 (B,C), dW_x (C,C), dW_h (C,C), db (C,)
    """
    x, h0, h, W_x, W_h = cache
    B, T, C = x.shape
    da = np.empty_like(h)  # (B,T,C)
    carry = np.zeros_like(h0)  # (B,C) da_{t+1} W_h^T: what step t+1 sends back to h_t
    for t in reversed(range(T)):  # the same chain, backwards
        da[:, t] = (dh[:, t] + carry) * (1.0 - h[:, t] ** 2)  # (B,C)
        carry = kernels.matmul(da[:, t], W_h.T)  # (B,C) @ (C,C) -> (B,C)
    dh0 = carry  # (B,C)
    h_prev = np.concatenate([h0[:, None], h[:, :-1]], axis=1)  # (B,T,C): h_{t-1} at every t
    da2 = da.reshape(B * T, C)  # (B,T,C) -> (B*T,C)
    dW_h = kernels.matmul(h_prev.reshape(B * T, C).T, da2)  # (C,B*T) @ (B*T,C) -> (C,C)
    dW_x = kernels.matmul(x.reshape(B * T, C).T, da2)  # (C,B*T) @ (B*T,C) -> (C,C)
    dx = kernels.matmul(da2, W_x.T).reshape(B, T, C)  # (B*T,C) @ (C,C) -> (B,T,C)
    return dx, dh0, dW_x, dW_h, da2.sum(axis=0)
