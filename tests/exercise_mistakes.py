"""Wrong answers to the exercises, for tests/test_exercises.py.

PLANTED: one (or more) per catalogued hint and per switched mistake of every
exercise: each must fail and get its hint (the words given). VARIANTS: mistakes
that are NOT a catalogued spelling: each must fail with a hint that names the
mistake's place. Most are variants of one catalogued hint (issue #21: every hint
is tested by a planted answer AND by at least one variant): a partial version of
the mistake (one AdamW bias correction of two, the scale left out of dk only), the
mistake with a second one (the checker names both), another code path or another
wrong count (1/sqrt(S) for 1/sqrt(D), a mean over the batch for a sum); their
numbers must differ from every PLANTED spelling of that hint. The others are
mistakes no hint catalogues (an untransposed square W_v, LoRA without alpha/r, ...).

Each is written as a learner would write it, not by calling the checker's own
switched references, so a test passing means the checker recognised the numbers.
measure() (`PYTHONPATH=. python tests/exercise_mistakes.py`) lists every catalogued
hint and whether a genuine variant of it gets its place named: 10 of 101 before
the variants were completed, 101 of 101 after; 106 of 106 with the recurrent layer's
5 (135 variants).
"""
import math

import numpy as np

from npformer.exercises import solutions as S
from npformer.exercises import solutions_llm as L
from npformer.exercises import solutions_model as M
from npformer.exercises.catalog_attention import mha_with
from npformer.exercises.checker import Case


def softmax_without_guards(x, mask):
    z = np.where(mask, x, -np.inf)
    e = np.exp(z - z.max(axis=-1, keepdims=True))  # NaN for a fully masked row
    y = e / e.sum(axis=-1, keepdims=True)
    return y, y


def softmax_without_max(x, mask):
    e = np.exp(np.where(mask, x, -np.inf))  # overflows for large scores
    y = e / e.sum(axis=-1, keepdims=True)
    return y, y


def softmax_ignoring_mask(x, mask):
    return S.softmax_forward(x, np.ones_like(mask))


def softmax_wrong_axis(x, mask):
    e = np.exp(x - x.max(axis=-2, keepdims=True))
    y = e / e.sum(axis=-2, keepdims=True)
    return y, y


def gelu_erf_forward(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0))), x


def layernorm_backward_with(mean_term=True, var_term=True):
    def backward(dy, cache):
        xhat, rstd, gamma = cache
        dx, dgamma, dbeta = S.layernorm_backward(dy, cache)
        g = dy * gamma
        dx = rstd * g
        if mean_term:
            dx = dx - rstd * g.mean(axis=-1, keepdims=True)
        if var_term:
            dx = dx - rstd * xhat * (g * xhat).mean(axis=-1, keepdims=True)
        return dx, dgamma, dbeta
    return backward


def layernorm_forward_with(ddof=0, eps_inside=True):
    def forward(x, gamma, beta):
        mean = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, ddof=ddof, keepdims=True)
        std = np.sqrt(var + 1e-5) if eps_inside else np.sqrt(var) + 1e-5
        xhat = (x - mean) / std
        return gamma * xhat + beta, (xhat, 1.0 / std, gamma)
    return forward


def layernorm_dgamma_first_axis(dy, cache):
    dx, _, _ = S.layernorm_backward(dy, cache)
    xhat = cache[0]
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def embedding_backward_with(accumulate=True, zero_pad=True, scale=True, dP_rule="sum"):
    def backward(dy, cache):
        ids, W_shape, P_shape, s, pad_id = cache
        B, T = ids.shape
        C = dy.shape[-1]
        rows = (s if scale else 1.0) * dy.reshape(-1, C)
        dW = np.zeros(W_shape)
        if accumulate:
            np.add.at(dW, ids.reshape(-1), rows)
        else:
            dW[ids.reshape(-1)] += rows  # a repeated id keeps one row
        if zero_pad:
            dW[pad_id] = 0.0
        dP = np.zeros(P_shape)
        if dP_rule == "sum":
            dP[:T] = dy.sum(axis=0)
        elif dP_rule == "mean":
            dP[:T] = dy.mean(axis=0)
        else:  # "used rows only": shape (T, C)
            dP = dy.sum(axis=0)
        return dW, dP
    return backward


def attention_forward_scaled(scale_of):
    def forward(q, k, v, mask):
        scale = scale_of(q.shape[-1])
        P, _ = S.softmax_forward(q @ k.transpose(0, 2, 1) * scale, mask)
        return P @ v, (q, k, v, P, scale)
    return forward


def attention_backward_without_scale(dout, cache):
    q, k, v, P, scale = cache
    dq, dk, dv = S.attention_backward(dout, cache)
    return dq / scale, dk / scale, dv


def attention_backward_without_inner_term(dout, cache):
    q, k, v, P, scale = cache
    dscores = scale * P * (dout @ v.transpose(0, 2, 1))
    return dscores @ k, dscores.transpose(0, 2, 1) @ q, P.transpose(0, 2, 1) @ dout


def attention_backward_dv_untransposed(dout, cache):
    dq, dk, _ = S.attention_backward(dout, cache)
    return dq, dk, cache[3] @ dout  # P dout: (B,T,D), not (B,S,D)


def attention_forward_without_mask(q, k, v, mask):
    return S.attention_forward(q, k, v, np.ones_like(mask))


MHA_ARGS = ("x_q", "x_kv", "W_q", "W_k", "W_v", "W_o", "mask", "n_heads")


def mha_forward_like(**mistake):
    """A wrong forward (wrong head split or scale); its cache is useless to the backward."""
    def forward(*args):
        return mha_with(Case("", dict(zip(MHA_ARGS, args)), None), **mistake), None
    return forward


def mha_backward_keys_only(dy, cache):
    dx_q, _, dW_q, dW_k, dW_v, dW_o = S.mha_backward(dy, cache)
    x_q, x_kv, W_q, W_k, W_v, W_o, ctx, att, H = cache
    _, dk, _ = S.attention_backward(S.split_heads(dy @ W_o.T, H), att)
    return dx_q, S.merge_heads(dk, x_q.shape[0]) @ W_k.T, dW_q, dW_k, dW_v, dW_o


def mha_backward_dW_o_transposed(dy, cache):
    *grads, dW_o = S.mha_backward(dy, cache)
    return (*grads, dW_o.T)


def cross_entropy_forward_with(ignore_padding=True, smoothing_over_others=False, stable=True):
    def forward(logits, targets, pad_id, smoothing):
        V = logits.shape[-1]
        z = logits - logits.max(axis=-1, keepdims=True) if stable else logits
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        off = smoothing / (V - 1) if smoothing_over_others else smoothing / V
        q = np.full(logits.shape, off)
        on = 1.0 - smoothing if smoothing_over_others else 1.0 - smoothing + smoothing / V
        np.put_along_axis(q, targets[..., None], on, axis=-1)
        valid = targets != pad_id if ignore_padding else np.ones(targets.shape, bool)
        n = max(int(valid.sum()), 1)
        loss = float((-(q * logp).sum(-1) * valid).sum() / n)
        return loss, (np.exp(logp), q, valid, n)
    return forward


def adamw_step_with(bias_correction=True, decoupled=True, decay_times_lr=True,
                    eps_inside=False, t_from_zero=False):
    def step(p, g, m, v, t, lr, betas, eps, weight_decay):
        b1, b2 = betas
        if decoupled:
            p = p * (1.0 - (lr * weight_decay if decay_times_lr else weight_decay))
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        t = t - 1 if t_from_zero else t
        with np.errstate(divide="ignore", invalid="ignore"):
            m_hat = m / (1 - b1**t) if bias_correction else m
            v_hat = v / (1 - b2**t) if bias_correction else v
        denom = np.sqrt(v_hat + eps) if eps_inside else np.sqrt(v_hat) + eps
        return p - lr * m_hat / denom, m, v
    return step


def block_with(residual="tape", norm_position="pre", gamma="value"):
    """The encoder block with one mistake (see solutions.encoder_block for the right one)."""
    from npformer.nn.blocks import add, feed_forward, norm, self_attention
    from npformer.nn.layers import layernorm_backward, layernorm_forward
    from npformer.nn.tape import Value

    def plain_gamma_norm(run, name, x):  # gamma passed as an array: the tape cannot see it
        return run.tape.call(name, layernorm_forward, layernorm_backward, x,
                             run.params[name + ".gamma"], run.param(name + ".beta"),
                             run.cfg.ln_eps)

    def block(run, prefix, x, mask):
        attn, ffn = f"{prefix}.self_attn", f"{prefix}.ffn"
        ln = norm if gamma == "value" else plain_gamma_norm

        def plus(name, a, b):
            return add(run, name, a, b) if residual == "tape" else Value(a.data + b.data, name)

        if norm_position == "post":
            x = ln(run, f"{prefix}.norm1", plus(attn + ".res", x, self_attention(run, attn, x, mask)))
            return ln(run, f"{prefix}.norm2", plus(ffn + ".res", x, feed_forward(run, ffn, x)))
        x = plus(attn + ".res", x, self_attention(run, attn, ln(run, f"{prefix}.norm1", x), mask))
        return plus(ffn + ".res", x, feed_forward(run, ffn, ln(run, f"{prefix}.norm2", x)))
    return block


# (exercise, words of the expected hint, the wrong functions)
PLANTED = [
    ("linear", "dW = x^T dy, not dy^T x",
     dict(backward=lambda dy, c: (lambda dx, dW, db: (dx, dW.T, db))(*S.linear_backward(dy, c)))),
    ("linear", "db must sum dy over every row",
     dict(backward=lambda dy, c: (*S.linear_backward(dy, c)[:2], dy.sum(axis=0)))),
    ("linear", "flatten the leading axes",
     dict(backward=lambda dy, c: (S.linear_backward(dy, c)[0],
                                  np.matmul(c[0].swapaxes(-1, -2), dy),
                                  S.linear_backward(dy, c)[2]))),
    ("relu", "not the mask (x > 0) alone", dict(backward=lambda dy, x: (x > 0) * 1.0)),
    ("relu", "not dy * (dy > 0)", dict(backward=lambda dy, x: dy * (dy > 0))),
    ("gelu", "not the exact x * Phi(x)", dict(forward=gelu_erf_forward)),
    ("gelu", "the second term is missing",
     dict(backward=lambda dy, x: dy * 0.5 * (1 + np.tanh(S.GELU_C * (x + S.GELU_A * x**3))))),
    ("softmax", "missing the `- <dy, y>` term", dict(backward=lambda dy, y: y * dy)),
    ("softmax", "keys are ALL masked", dict(forward=softmax_without_guards)),
    ("softmax", "exp overflows", dict(forward=softmax_without_max)),
    ("softmax", "masked keys must get exactly zero weight", dict(forward=softmax_ignoring_mask)),
    ("softmax", "over the LAST axis", dict(forward=softmax_wrong_axis)),
    ("layernorm", "missing the mean term", dict(backward=layernorm_backward_with(mean_term=False))),
    ("layernorm", "missing the variance term",
     dict(backward=layernorm_backward_with(var_term=False))),
    ("layernorm", ("missing the mean term", "missing the variance term"),
     dict(backward=layernorm_backward_with(mean_term=False, var_term=False))),
    ("layernorm", "population variance", dict(forward=layernorm_forward_with(ddof=1))),
    ("layernorm", "eps goes inside the square root",
     dict(forward=layernorm_forward_with(eps_inside=False))),
    ("layernorm", "dgamma and dbeta have shape (C,)", dict(backward=layernorm_dgamma_first_axis)),
    ("embedding", "np.add.at", dict(backward=embedding_backward_with(accumulate=False))),
    ("embedding", "padding row's gradient must be zero",
     dict(backward=embedding_backward_with(zero_pad=False))),
    ("embedding", "scatter sqrt(C) * dy", dict(backward=embedding_backward_with(scale=False))),
    ("embedding", "a sum over the batch", dict(backward=embedding_backward_with(dP_rule="mean"))),
    ("embedding", "the shape of the whole table P",
     dict(backward=embedding_backward_with(dP_rule="used rows only"))),
    ("attention", "the 1/sqrt(D) scale is missing",
     dict(forward=attention_forward_scaled(lambda D: 1.0))),
    ("attention", "the 1/sqrt(D) scale is missing",
     dict(forward=attention_forward_scaled(lambda D: 1.0 / D))),
    ("attention", "so the backward does too",
     dict(backward=attention_backward_without_scale)),
    ("attention", "the mask is not applied", dict(forward=attention_forward_without_mask)),
    ("attention", "missing the `- <dP, P>` term",
     dict(backward=attention_backward_without_inner_term)),
    ("attention", "dv = P^T dout", dict(backward=attention_backward_dv_untransposed)),
    ("mha", "transpose(0, 2, 1, 3)", dict(forward=mha_forward_like(split="reshape"))),
    ("mha", "the HEAD dim, not 1/sqrt(C)", dict(forward=mha_forward_like(scale_dim="C"))),
    ("mha", "scale of the scores is missing", dict(forward=mha_forward_like(scale_dim="none"))),
    ("mha", "x_kv feeds BOTH the keys and the values", dict(backward=mha_backward_keys_only)),
    ("mha", "has the weight's shape", dict(backward=mha_backward_dW_o_transposed)),
    ("cross_entropy", "padding positions must be ignored",
     dict(forward=cross_entropy_forward_with(ignore_padding=False))),
    ("cross_entropy", "carries a 1/n",
     dict(backward=lambda dloss, c: S.cross_entropy_backward(dloss, c) * c[3])),
    ("cross_entropy", "multiply by the upstream gradient",
     dict(backward=lambda dloss, c: S.cross_entropy_backward(1.0, c))),
    ("cross_entropy", "the sign is flipped",
     dict(backward=lambda dloss, c: -S.cross_entropy_backward(dloss, c))),
    ("cross_entropy", "over ALL V classes",
     dict(forward=cross_entropy_forward_with(smoothing_over_others=True))),
    ("cross_entropy", "exp overflows for large logits",
     dict(forward=cross_entropy_forward_with(stable=False))),
    ("adamw", "the bias correction is missing", dict(step=adamw_step_with(bias_correction=False))),
    ("adamw", "Adam with L2", dict(step=adamw_step_with(decoupled=False))),
    ("adamw", "scaled by the learning rate", dict(step=adamw_step_with(decay_times_lr=False))),
    ("adamw", "eps goes outside the square root", dict(step=adamw_step_with(eps_inside=True))),
    ("adamw", "counted from 1", dict(step=adamw_step_with(t_from_zero=True))),
    ("block", "must get the SUM of both gradients", dict(block=block_with(residual="numpy"))),
    ("block", "this exercise is pre-LN", dict(block=block_with(norm_position="post"))),
    ("block", "some parameters got no gradient", dict(block=block_with(gamma="array"))),
]


# ----------------------------------------------------------------- new hints and switches
def gelu_forward_constants(c=S.GELU_C, a=S.GELU_A):
    def forward(x):
        return 0.5 * x * (1.0 + np.tanh(c * (x + a * x**3))), x
    return forward


def layernorm_backward_switched(gamma=True, mean_term=True, var_term=True, dbeta_mean=False):
    def backward(dy, cache):
        xhat, rstd, g_ = cache
        C = dy.shape[-1]
        g = dy * g_ if gamma else dy
        dx = rstd * g
        if mean_term:
            dx = dx - rstd * g.mean(axis=-1, keepdims=True)
        if var_term:
            dx = dx - rstd * xhat * (g * xhat).mean(axis=-1, keepdims=True)
        dbeta = dy.reshape(-1, C).mean(axis=0) if dbeta_mean else dy.reshape(-1, C).sum(axis=0)
        return dx, (dy * xhat).reshape(-1, C).sum(axis=0), dbeta
    return backward


def sinusoidal_with(layout="interleaved", exponent=2, first=np.sin, second=np.cos):
    def table(max_len, d_model):
        half = (d_model + 1) // 2
        angle = np.arange(max_len)[:, None] / 10000.0 ** (exponent * np.arange(half) / d_model)
        out = np.zeros((max_len, d_model))
        if layout == "halves":
            out[:, :half], out[:, half:] = first(angle), second(angle[:, : d_model // 2])
        else:
            out[:, 0::2], out[:, 1::2] = first(angle), second(angle[:, : d_model // 2])
        return out
    return table


def dropout_forward_keep_prob(x, rate, rng):  # `rate` read as the probability to keep
    m = (rng.random(x.shape) < rate) / rate
    return x * m, m


def dropout_backward_new_mask(dy, cache):
    m = cache
    return dy * np.random.default_rng(123).permutation(m.ravel()).reshape(m.shape)


def ffn_backward_gate(rule):
    def backward(dy, cache):
        lin_1, act, lin_2, activation = cache
        if activation != "relu":
            return M.ffn_backward(dy, cache)
        x, W_1 = lin_1
        da, dW_2, db_2 = S.linear_backward(dy, lin_2)
        h_no_bias = x @ W_1
        dh = da * (h_no_bias > 0) if rule == "before bias" else da
        dx, dW_1, db_1 = S.linear_backward(dh, lin_1)
        return dx, dW_1, db_1, dW_2, db_2
    return backward


def pool_forward_with(mean="real", last="real"):
    def forward(x, key_ok, mode):
        B, T, C = x.shape
        w = np.zeros((B, T))
        if mode == "mean":
            if mean == "all T":
                w[:] = 1.0 / T
            elif mean == "sum":
                w[:] = key_ok
            else:
                w[:] = key_ok / key_ok.sum(axis=1, keepdims=True)
        elif mode == "last":
            if last == "end":
                w[:, -1] = 1.0
            else:
                w[np.arange(B), key_ok.sum(axis=1) - 1] = 1.0
        else:
            w[:, 0] = 1.0
        return np.einsum("bt,btc->bc", w, x), w
    return forward


def output_loss_all_logits(x, E, b, targets, pad_id):
    logits = x @ E.T + b  # (B,T,V) all at once
    loss, cache = S.cross_entropy_forward(logits, targets, pad_id, 0.0)
    dlogits = S.cross_entropy_backward(1.0, cache)
    V, C = E.shape
    d2 = dlogits.reshape(-1, V)
    return loss, ((dlogits @ E), d2.T @ x.reshape(-1, C), d2.sum(axis=0))


def decoder_block_with(memory="value", residual="tape", gamma="value"):
    from npformer.nn.blocks import add, cross_attention, feed_forward, norm, self_attention
    from npformer.nn.layers import layernorm_backward, layernorm_forward
    from npformer.nn.tape import Value

    def block(run, prefix, y, mem, self_mask, cross_mask):
        attn, cross, ffn = f"{prefix}.self_attn", f"{prefix}.cross_attn", f"{prefix}.ffn"
        if memory == "array":
            mem = Value(mem.data, "memory copy")  # a new key: no gradient reaches memory

        def ln(name, v):
            if gamma == "value":
                return norm(run, name, v)
            return run.tape.call(name, layernorm_forward, layernorm_backward, v,
                                 run.params[name + ".gamma"], run.param(name + ".beta"),
                                 run.cfg.ln_eps)

        def plus(name, a, b):
            return add(run, name, a, b) if residual == "tape" else Value(a.data + b.data, name)
        y = plus(attn + ".r", y, self_attention(run, attn, ln(f"{prefix}.norm1", y), self_mask))
        y = add(run, cross + ".r", y, cross_attention(run, cross, ln(f"{prefix}.norm2", y), mem,
                                                      cross_mask))
        return add(run, ffn + ".r", y, feed_forward(run, ffn, ln(f"{prefix}.norm3", y)))
    return block


def adamw_step_switched(bias_m=True, bias_v=True, betas_swapped=False, decay_after=False,
                        decoupled=True, decay_times_lr=True, eps_inside=False):
    def step(p, g, m, v, t, lr, betas, eps, weight_decay):
        b1, b2 = (betas[1], betas[0]) if betas_swapped else betas
        decay = 1.0 - (lr * weight_decay if decay_times_lr else weight_decay)
        if decoupled and not decay_after:
            p = p * decay
        if not decoupled:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t) if bias_m else m
        v_hat = v / (1 - b2**t) if bias_v else v
        p = p - lr * m_hat / (np.sqrt(v_hat + eps) if eps_inside else np.sqrt(v_hat) + eps)
        if decoupled and decay_after:
            p = p * decay
        return p, m, v
    return step


def clip_with(rule):
    def clip(grads, max_norm):
        norms = {k: float(np.sqrt((g**2).sum())) for k, g in grads.items()}
        total = sum(norms.values()) if rule == "sum of norms" else math.sqrt(
            sum(n**2 for n in norms.values()))
        if rule == "not in place":
            coef = min(1.0, max_norm / (total + 1e-6))
            grads = {k: g * coef for k, g in grads.items()}  # new arrays: the caller never sees them
            return total
        for k, g in grads.items():
            own = norms[k] if rule == "per tensor" else total
            coef = max_norm / (own + (0.0 if rule == "no eps" else 1e-6))
            if coef < 1.0 or rule == "always":
                g *= coef
        if rule == "after":
            return math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
        return total
    return clip


def lm_loss_forward_with(pair="shift", pad="ignored", reduce="mean"):
    def forward(logits, ids, pad_id):
        if pair == "same":
            pred, target = logits, ids
        elif pair == "backward":
            pred, target = logits[:, 1:], ids[:, :-1]
        else:
            pred, target = logits[:, :-1], ids[:, 1:]
        loss, cache = S.cross_entropy_forward(pred, target, pad_id if pad == "ignored" else -1,
                                              0.0)
        n = cache[3]
        return (loss * n if reduce == "sum" else loss), (cache, pair, logits.shape, reduce, n)
    return forward


def lm_loss_backward_with(dloss, cache):
    ce_cache, pair, shape, reduce, n = cache
    d = S.cross_entropy_backward(dloss * (n if reduce == "sum" else 1), ce_cache)
    out = np.zeros(shape)
    if pair == "same":
        out[:] = d
    elif pair == "backward":
        out[:, 1:] = d
    else:
        out[:, :-1] = d
    return out


def filter_with(rule):
    """top-k / top-p with one mistake; `rule` names it."""
    def filter_logits(logits, top_k, top_p):
        out = np.array(logits, dtype=float)
        V = out.shape[-1]
        order = np.argsort(out, axis=-1)[:, ::-1] if rule != "ascending" else np.argsort(
            out, axis=-1)
        k = top_k + (1 if rule == "k+1" else -1 if rule == "k-1" else 0)
        if 0 < top_k < V:
            np.put_along_axis(out, order[:, k:], -np.inf, axis=-1)
        if top_p < 1.0:
            source = np.array(logits, dtype=float) if rule == "no renormalise" else out
            ranked = np.take_along_axis(source, order, axis=-1)
            p = np.exp(ranked - ranked[:, :1])
            p /= p.sum(axis=-1, keepdims=True)
            cum = np.cumsum(p, axis=-1)
            drop = cum >= top_p if rule == "p one too few" else (cum - p) >= top_p
            if rule == "p one too many":  # also keeps the first token past the nucleus
                drop = np.concatenate([np.zeros_like(drop[:, :1]), drop[:, :-1]], axis=1)
            ranked = np.take_along_axis(out, order, axis=-1)
            ranked[drop] = -np.inf
            np.put_along_axis(out, order, ranked, axis=-1)
        return out
    return filter_logits


def kv_step_with(rule):
    def step(x, W_q, W_k, W_v, W_o, past_k, past_v, n_heads):
        B, _, C = x.shape
        D = C // n_heads

        def heads(a):
            return a.reshape(B, 1, n_heads, D).transpose(0, 2, 1, 3)
        q, k_new, v_new = heads(x @ W_q), heads(x @ W_k), heads(x @ W_v)
        k = np.concatenate([past_k, k_new], axis=2)
        v = np.concatenate([past_v, v_new], axis=2)
        keys, values = (k_new, v_new) if rule == "no past" else (k, v)
        if rule == "before append" and past_k.shape[2] > 0:
            keys, values = past_k, past_v
        scale = 1.0 if rule == "no scale" else 1.0 / math.sqrt(D)
        s = q @ keys.transpose(0, 1, 3, 2) * scale
        P = np.exp(s - s.max(axis=-1, keepdims=True))
        P /= P.sum(axis=-1, keepdims=True)
        y = (P @ values).transpose(0, 2, 1, 3).reshape(B, 1, C) @ W_o
        if rule == "returns the new key only":
            return y, k_new, v_new  # the cache never grows
        return y, k, v
    return step


def bpe_merge_with(rule):
    def merge_step(words, freqs, new_id):
        counts = {}
        for word, f in zip(words, freqs):
            for pair in zip(word, word[1:]):
                counts[pair] = counts.get(pair, 0) + (1 if rule == "unweighted" else f)
        top = max(counts.values())
        ties = sorted(p for p, c in counts.items() if c == top)
        pair = ties[-1] if rule == "largest tie" else ties[0]
        merged = []
        for word in words:
            w = list(word)
            if rule == "right to left":
                i = len(w) - 2
                while i >= 0:
                    if (w[i], w[i + 1]) == pair:
                        w[i:i + 2] = [new_id]
                        i -= 2
                    else:
                        i -= 1
            else:
                i = 0
                while i < len(w) - 1:
                    if (w[i], w[i + 1]) == pair:
                        w[i:i + 2] = [new_id]
                    i += 1
            merged.append(w)
        return pair, merged
    return merge_step


def power_law_with(rule):
    def fit(x, y, floor):
        target = y if rule == "no floor" else y - floor
        if rule == "swapped":
            A = np.stack([np.log(target), np.ones(len(x))], axis=1)
            (s, c), *_ = np.linalg.lstsq(A, np.log(x), rcond=None)
            slope, intercept = 1 / s, -c / s
        else:
            A = np.stack([np.log(x), np.ones(len(x))], axis=1)
            (slope, intercept), *_ = np.linalg.lstsq(A, np.log(target), rcond=None)
        a = intercept if rule == "log a" else math.exp(intercept)
        return a, (slope if rule == "sign" else -slope)
    return fit


def icl_score_with(rule):
    def score(logits, targets, pad_id, early, late):
        z = logits if rule == "unstable" else logits - logits.max(axis=-1, keepdims=True)
        with np.errstate(all="ignore"):
            logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        loss = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
        ok = np.ones_like(targets, bool) if rule == "all rows" else targets != pad_id
        if rule == "one-based":
            early, late = early - 1, late - 1
        lo, hi = loss[ok[:, early], early].mean(), loss[ok[:, late], late].mean()
        if rule == "ratio":
            return hi / lo
        return lo - hi if rule == "sign" else hi - lo
    return score


PLANTED_NEW = [
    ("gelu", "sqrt(2/pi) = 0.79788", dict(forward=gelu_forward_constants(c=0.8))),
    ("gelu", "another cubic constant", dict(forward=gelu_forward_constants(a=0.05))),
    ("softmax", "the number subtracted from dy is wrong",
     dict(backward=lambda dy, y: y * (dy - dy.mean(axis=-1, keepdims=True)))),
    ("layernorm", ("dx is missing gamma", "missing the mean term"),
     dict(backward=layernorm_backward_switched(gamma=False, mean_term=False))),
    ("layernorm", ("dx is missing gamma", "missing the variance term - xhat"),
     dict(backward=layernorm_backward_switched(gamma=False, var_term=False))),
    ("layernorm", "dbeta sums dy over the rows",
     dict(backward=layernorm_backward_switched(dbeta_mean=True))),
    ("sinusoidal", "not in two halves", dict(table=sinusoidal_with(layout="halves"))),
    ("sinusoidal", "the exponent is 2i/C", dict(table=sinusoidal_with(exponent=1))),
    ("sinusoidal", "sin goes on the even features",
     dict(table=sinusoidal_with(first=np.cos, second=np.sin))),
    ("dropout", "rate is the probability of DROPPING", dict(forward=dropout_forward_keep_prob)),
    ("dropout", "the SAME mask as the forward", dict(backward=dropout_backward_new_mask)),
    ("ffn", "the bias b_1 is missing from the gate",
     dict(backward=ffn_backward_gate("before bias"))),
    ("ffn", "through the activation's derivative", dict(backward=ffn_backward_gate("none"))),
    ("pooling", "the mean runs over the REAL tokens", dict(forward=pool_forward_with(mean="all T"))),
    ("pooling", "'last' is the last REAL token", dict(forward=pool_forward_with(last="end"))),
    ("pooling", "'mean' divides by the number of real tokens",
     dict(forward=pool_forward_with(mean="sum"))),
    ("output_loss", "never holds the whole (N, V) logits",
     dict(forward=output_loss_all_logits,
          backward=lambda dloss, c: tuple(dloss * g for g in c))),
    ("decoder_block", "memory gets no gradient", dict(block=decoder_block_with(memory="array"))),
    ("decoder_block", "out is right but dy is not", dict(block=decoder_block_with(residual="numpy"))),
    ("decoder_block", "some parameters got no gradient",
     dict(block=decoder_block_with(gamma="array"))),
    ("adamw", "the bias correction of m is missing", dict(step=adamw_step_switched(bias_m=False))),
    ("adamw", "the bias correction of v is missing", dict(step=adamw_step_switched(bias_v=False))),
    ("adamw", "the betas are swapped", dict(step=adamw_step_switched(betas_swapped=True))),
    ("adamw", "the weight decay comes before the Adam update",
     dict(step=adamw_step_switched(decay_after=True))),
    ("adamw", ("Adam with L2", "bias correction of v"),
     dict(step=adamw_step_switched(decoupled=False, bias_v=False))),
    ("adamw", ("scaled by the learning rate", "bias correction of m"),
     dict(step=adamw_step_switched(decay_times_lr=False, bias_m=False))),
    ("adamw", ("eps goes outside the square root", "the betas are swapped"),
     dict(step=adamw_step_switched(eps_inside=True, betas_swapped=True))),
    ("clip", "the norm is GLOBAL", dict(clip=clip_with("per tensor"))),
    ("clip", "clip only when the norm is above max_norm", dict(clip=clip_with("always"))),
    ("clip", "the 1e-6 is missing", dict(clip=clip_with("no eps"))),
    ("clip", "return the norm BEFORE clipping", dict(clip=clip_with("after"))),
    ("clip", "not the sum of the norms", dict(clip=clip_with("sum of norms"))),
    ("clip", "IN PLACE", dict(clip=clip_with("not in place"))),
    ("lm_loss", "predict the NEXT token",
     dict(forward=lm_loss_forward_with(pair="same"), backward=lm_loss_backward_with)),
    ("lm_loss", "the shift goes forward",
     dict(forward=lm_loss_forward_with(pair="backward"), backward=lm_loss_backward_with)),
    ("lm_loss", "padding targets must not count",
     dict(forward=lm_loss_forward_with(pad="counted"), backward=lm_loss_backward_with)),
    ("lm_loss", "MEAN over the predicted tokens",
     dict(forward=lm_loss_forward_with(reduce="sum"), backward=lm_loss_backward_with)),
    ("bpe_merge", "sum of the FREQUENCIES", dict(merge=bpe_merge_with("unweighted"))),
    ("bpe_merge", "ties go to the smaller pair", dict(merge=bpe_merge_with("largest tie"))),
    ("bpe_merge", "merge left to right", dict(merge=bpe_merge_with("right to left"))),
    ("filter", "keeps one token too few", dict(filter=filter_with("p one too few"))),
    ("filter", "keeps one token too many", dict(filter=filter_with("p one too many"))),
    ("filter", "top-k keeps k tokens: the k largest", dict(filter=filter_with("k-1"))),
    ("filter", "not k + 1", dict(filter=filter_with("k+1"))),
    ("filter", "taken from what top-k left", dict(filter=filter_with("no renormalise"))),
    ("filter", "DECREASING order", dict(filter=filter_with("ascending"))),
    ("kv_step", "attend to itself too", dict(step=kv_step_with("before append"))),
    ("kv_step", "attend over the cached past", dict(step=kv_step_with("no past"))),
    ("kv_step", "divided by sqrt(D)", dict(step=kv_step_with("no scale"))),
    ("kv_step", "grows by one position per step", dict(step=kv_step_with("returns the new key only"))),
    ("power_law", "alpha is MINUS the slope", dict(fit=power_law_with("sign"))),
    ("power_law", "subtract the floor first", dict(fit=power_law_with("no floor"))),
    ("power_law", "a = exp(intercept)", dict(fit=power_law_with("log a"))),
    ("power_law", "regress log y on log x", dict(fit=power_law_with("swapped"))),
    ("icl_score", "negative when the context helps", dict(score=icl_score_with("sign"))),
    ("icl_score", "over the real targets only", dict(score=icl_score_with("all rows"))),
    ("icl_score", "0-based positions", dict(score=icl_score_with("one-based"))),
    ("icl_score", "a DIFFERENCE of losses", dict(score=icl_score_with("ratio"))),
    ("icl_score", "exp overflows for large logits", dict(score=icl_score_with("unstable"))),
]

PLANTED += PLANTED_NEW


# ----------------------------------------------------------------- mistakes nobody catalogued
# Wrong answers that are NOT the spellings main's checker had hints for (its catalogue:
# the WRONG list above as it was before issue #21). Each must get a hint that names the
# place of the mistake: the words after the exercise's name.
def v_adamw_step(bias_m=True, bias_v=True, swap=False, decay_after=False):
    def step(p, g, m, v, t, lr, betas, eps, weight_decay):
        b1, b2 = betas[::-1] if swap else betas
        if not decay_after:
            p = p * (1 - lr * weight_decay)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t) if bias_m else m
        v_hat = v / (1 - b2**t) if bias_v else v
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        if decay_after:
            p = p * (1 - lr * weight_decay)
        return p, m, v
    return step


def v_layernorm_backward(gamma_in_dx=True, mean_sign=-1, dgamma_centred=False):
    def backward(dy, cache):
        xhat, rstd, gamma = cache
        C = dy.shape[-1]
        dgamma = (dy * (xhat / rstd if dgamma_centred else xhat)).reshape(-1, C).sum(0)
        g = dy * gamma if gamma_in_dx else dy
        dx = rstd * (g + mean_sign * g.mean(-1, keepdims=True)
                     - xhat * (g * xhat).mean(-1, keepdims=True))
        return dx, dgamma, dy.reshape(-1, C).sum(0)
    return backward


def v_gelu_backward_cubic(dy, x):
    t = np.tanh(S.GELU_C * (x + S.GELU_A * x**3))
    du = S.GELU_C * (1 + S.GELU_A * x**2)  # d/dx of 0.044715 x^3 taken as 0.044715 x^2
    return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t**2) * du)


def v_gelu_forward_2_over_pi(x):
    return 0.5 * x * (1 + np.tanh((2 / math.pi) * (x + S.GELU_A * x**3))), x


def v_gelu_backward_2_over_pi(dy, x):
    c = 2 / math.pi
    t = np.tanh(c * (x + S.GELU_A * x**3))
    return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t**2) * c * (1 + 3 * S.GELU_A * x**2))


def v_mha_backward_untransposed(which):
    def backward(dy, cache):
        dx_q, dx_kv, dW_q, dW_k, dW_v, dW_o = S.mha_backward(dy, cache)
        x_q, x_kv, W_q, W_k, W_v, W_o, ctx, att, H = cache
        B = x_q.shape[0]
        dq, dk, dv = S.attention_backward(S.split_heads(dy @ W_o.T, H), att)
        dq, dk, dv = S.merge_heads(dq, B), S.merge_heads(dk, B), S.merge_heads(dv, B)
        if which == "W_v":
            dx_kv = dk @ W_k.T + dv @ W_v  # W_v square: no shape error, wrong values
        else:
            dx_q = dq @ W_q
        return dx_q, dx_kv, dW_q, dW_k, dW_v, dW_o
    return backward


def v_attention_backward_dk_unscaled(dout, cache):
    dq, dk, dv = S.attention_backward(dout, cache)
    return dq, dk / cache[4], dv


def v_cross_entropy_backward(rule):
    def backward(dloss, cache):
        p, q, valid, n = cache
        if rule == "one-hot":
            target = (q == q.max(-1, keepdims=True)).astype(float)
            return dloss * (p - target) * valid[..., None] / n
        return dloss * (p - q) / n  # padding rows not zeroed
    return backward


def v_embedding_backward(rule):
    def backward(dy, cache):
        dW, dP = S.embedding_backward(dy, cache)
        ids, W_shape, P_shape, scale, pad_id = cache
        if rule == "dP scaled":
            dP = dP * scale
        else:  # padding positions left out of dP
            dP = np.zeros(P_shape)
            dP[:ids.shape[1]] = (dy * (ids != pad_id)[..., None]).sum(0)
        return dW, dP
    return backward


def v_embedding_forward_unscaled(ids, W, P, pad_id):
    _, cache = S.embedding_forward(ids, W, P, pad_id)
    return W[ids] + P[:ids.shape[1]], cache


def v_block_one_numpy_residual():
    from npformer.nn.blocks import add, feed_forward, norm, self_attention
    from npformer.nn.tape import Value

    def block(run, prefix, x, mask):
        attn, ffn = f"{prefix}.self_attn", f"{prefix}.ffn"
        x = add(run, attn + ".res", x,
                self_attention(run, attn, norm(run, f"{prefix}.norm1", x), mask))
        h = feed_forward(run, ffn, norm(run, f"{prefix}.norm2", x))
        return Value(x.data + h.data, "sum")  # the second residual leaves the tape
    return block


def v_lora_unscaled():
    def forward(x, W, b, A, B, alpha):
        return x @ W + b + x @ A @ B, (x, W, A, B)  # the update without alpha/r

    def backward(dy, cache):
        x, W, A, B = cache
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        return dy @ W.T + dy @ B.T @ A.T, x2.T @ dy2 @ B.T, (x2 @ A).T @ dy2
    return forward, backward


def v_top_p_one_too_few(logits, top_k, top_p):
    out = np.array(logits, dtype=float)
    for row in out:
        order = np.argsort(-row)
        if top_k:
            row[order[top_k:]] = -np.inf
        p = np.exp(row[order] - row[order[0]])
        p /= p.sum()
        row[order[np.cumsum(p) > top_p]] = -np.inf  # drops the token that reaches top_p
    return out


def v_dropout_multiplies(x, rate, rng):
    keep = rng.random(x.shape) > rate
    return np.where(keep, x * (1 - rate), 0.0), keep * (1 - rate)


def v_pool_mean_over_all(x, key_ok, mode):
    if mode == "mean":
        return x.mean(axis=1), ("mean", x.shape)
    y, w = M.pool_forward(x, key_ok, mode)
    return y, ("w", w)


def v_pool_backward(dy, cache):
    kind, value = cache
    if kind == "mean":
        B, T, C = value
        return np.repeat(dy[:, None, :] / T, T, axis=1)
    return M.pool_backward(dy, value)


def v_tied_backward_output_path_only(dlogits, cache):
    ids, E, x = cache
    V, C = E.shape
    d2 = dlogits.reshape(-1, V)
    return d2.T @ x.reshape(-1, C), d2.sum(axis=0)  # forgets that E is also the embedding


def v_clip_each(grads, max_norm):
    total = 0.0
    for g in grads.values():
        n = np.linalg.norm(g)
        total += n * n
        if n > max_norm:
            g *= max_norm / (n + 1e-6)
    return total ** 0.5


def v_lm_loss_forward_unshifted(logits, ids, pad_id):
    return S.cross_entropy_forward(logits, ids, pad_id, 0.0)


def v_kv_attend_then_append(x, W_q, W_k, W_v, W_o, past_k, past_v, n_heads):
    B, _, C = x.shape
    D = C // n_heads
    split = lambda a: a.reshape(B, n_heads, 1, D)  # noqa: E731 (one position: no transpose needed)
    q = split(x @ W_q)
    if past_k.shape[2]:
        s = q @ past_k.transpose(0, 1, 3, 2) / math.sqrt(D)
        P = np.exp(s - s.max(-1, keepdims=True))
        ctx = (P / P.sum(-1, keepdims=True)) @ past_v
    else:
        ctx = split(x @ W_v)
    y = ctx.reshape(B, 1, C) @ W_o
    return y, np.concatenate([past_k, split(x @ W_k)], 2), np.concatenate([past_v, split(x @ W_v)], 2)


def v_bpe_count_words(words, freqs, new_id):
    counts = {}
    for word in words:
        for pair in set(zip(word, word[1:])):
            counts[pair] = counts.get(pair, 0) + 1  # one per word, frequencies ignored
    pair = min(counts, key=lambda p: (-counts[p], p))
    from npformer.tokenizers.bpe import merge_pair
    return pair, [merge_pair(w, pair, new_id) for w in words]


def v_power_law_slope_as_alpha(x, y, floor):
    slope, intercept = np.polyfit(np.log10(x), np.log10(y - floor), 1)
    return 10 ** intercept, slope


def v_icl_early_minus_late(logits, targets, pad_id, early, late):
    return -L.icl_score(logits, targets, pad_id, early, late)


def v_ffn_gate_on_xW(dy, cache):
    (x, W_1), h, (a, W_2), activation = cache
    if activation != "relu":
        return M.ffn_backward(dy, cache)
    da = dy @ W_2.T
    dh = np.where(np.einsum("...c,cf->...f", x, W_1) > 0, da, 0.0)  # gate without b_1
    n = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731
    return (dh @ W_1.T, n(x).T @ n(dh), n(dh).sum(0), n(a).T @ n(dy), n(dy).sum(0))


def v_output_loss_backward_no_dloss(dloss, cache):
    return cache  # the stored gradients, not scaled by dloss


def v_decoder_memory_as_constant(run, prefix, y, memory, self_mask, cross_mask):
    return M.decoder_block(run, prefix, y, memory.data, self_mask, cross_mask)


def v_sinusoidal_in_halves(max_len, d_model):
    table = M.sinusoidal_table(max_len, d_model)
    return np.concatenate([table[:, 0::2], table[:, 1::2]], axis=1)  # all sines, then cosines


_lora_forward, _lora_backward = v_lora_unscaled()

# (exercise, words of the catalogued hint it is a variant of (None: of no catalogued hint),
#  words naming the place, the wrong functions). SAME: uncatalogued before issue #21, but
# since then the same numbers as a PLANTED spelling: not a variant of any hint now.
SAME = None
VARIANTS = [
    ("adamw", "the bias correction is missing", "1 - b1**t",
     dict(step=v_adamw_step(bias_m=False))),  # half of the catalogued mistake
    ("adamw", "the bias correction is missing", "1 - b2**t",
     dict(step=v_adamw_step(bias_v=False))),
    ("adamw", SAME, "betas", dict(step=v_adamw_step(swap=True))),
    ("adamw", SAME, "before the Adam update",
     dict(step=v_adamw_step(decay_after=True))),
    ("layernorm", "dx is missing gamma", "gamma",
     dict(backward=v_layernorm_backward(gamma_in_dx=False))),
    ("layernorm", "dx is missing the mean term", "mean",
     dict(backward=v_layernorm_backward(mean_sign=+1))),  # the term with the wrong sign
    ("layernorm", None, "dgamma", dict(backward=v_layernorm_backward(dgamma_centred=True))),
    ("gelu", None, "0.044715", dict(backward=v_gelu_backward_cubic)),
    ("gelu", "another constant in front", "sqrt(2/pi)",
     dict(forward=v_gelu_forward_2_over_pi, backward=v_gelu_backward_2_over_pi)),
    ("mha", None, "W_v", dict(backward=v_mha_backward_untransposed("W_v"))),
    ("mha", None, "W_q", dict(backward=v_mha_backward_untransposed("W_q"))),
    ("softmax", "the number subtracted from dy is wrong", "<dy, y>",
     dict(backward=lambda dy, y: y * (dy - dy.sum(-1, keepdims=True)))),
    ("attention", "so the backward does too", "dk",
     dict(backward=v_attention_backward_dk_unscaled)),  # the scale left out of dk only
    ("cross_entropy", None, "smooth", dict(backward=v_cross_entropy_backward("one-hot"))),
    ("cross_entropy", "padding positions must be ignored", "padding",
     dict(backward=v_cross_entropy_backward("padding"))),  # in the backward only
    ("embedding", "the forward multiplies by sqrt(C)", "dP",
     dict(backward=v_embedding_backward("dP scaled"))),  # the scale put on the wrong gradient
    ("embedding", None, "sqrt(C)", dict(forward=v_embedding_forward_unscaled)),
    ("embedding", "a sum over the batch", "padding",
     dict(backward=v_embedding_backward("padding left out"))),  # a sum over SOME sentences
    ("linear", "db must sum dy over every row", "db",
     dict(backward=lambda dy, c: (*S.linear_backward(dy, c)[:2],
                                  dy.reshape(-1, dy.shape[-1]).mean(0)))),
    ("relu", None, "x <= 0", dict(backward=lambda dy, x: dy * np.where(x > 0, 1.0, 0.01))),
    ("block", SAME, "SUM",
     dict(block=v_block_one_numpy_residual())),  # one residual of two off the tape
    ("lora", None, "alpha/r", dict(forward=_lora_forward, backward=_lora_backward)),
    ("filter", SAME, "one token too few", dict(filter=v_top_p_one_too_few)),
    ("dropout", None, "(1 - rate)", dict(forward=v_dropout_multiplies)),
    ("pooling", SAME, "REAL tokens",
     dict(forward=v_pool_mean_over_all, backward=v_pool_backward)),
    ("tied", None, "embedding", dict(backward=v_tied_backward_output_path_only)),
    ("clip", SAME, "GLOBAL", dict(clip=v_clip_each)),
    ("lm_loss", SAME, "NEXT token",
     dict(forward=v_lm_loss_forward_unshifted,
          backward=lambda dloss, c: S.cross_entropy_backward(dloss, c))),
    ("kv_step", SAME, "attend to itself",
     dict(step=v_kv_attend_then_append)),
    ("bpe_merge", SAME, "FREQUENCIES", dict(merge=v_bpe_count_words)),
    ("power_law", SAME, "MINUS the slope",
     dict(fit=v_power_law_slope_as_alpha)),
    ("icl_score", SAME, "loss(late) - loss(early)",
     dict(score=v_icl_early_minus_late)),
    ("ffn", SAME, "b_1", dict(backward=v_ffn_gate_on_xW)),
    ("output_loss", None, "dloss", dict(backward=v_output_loss_backward_no_dloss)),
    ("decoder_block", SAME, "memory",
     dict(block=v_decoder_memory_as_constant)),
    ("sinusoidal", SAME, "alternate", dict(table=v_sinusoidal_in_halves)),
]


# ----------------------------------------------------------------- variants of every hint
# One (at least) for each catalogued hint that had none: partial versions, the mistake with
# a second one, another code path or another wrong count; numbers unlike every PLANTED one.

def lin_dW_T_db_first(dy, c):
    dx, dW, db = S.linear_backward(dy, c)
    return dx, dW.T, dy.sum(axis=0)
def lin_dW_per_seq_mean(dy, c):
    x = c[0]
    dx, dW, db = S.linear_backward(dy, c)
    if x.ndim > 2:
        dW = np.matmul(x.swapaxes(-1, -2), dy).mean(axis=0)
    return dx, dW, db
def relu_mask_of_y(dy, x):
    return (np.maximum(x, 0) > 0) * (dy != 0) * 1.0 * np.abs(dy).max()
def relu_gate_both(dy, x):
    return dy * (x > 0) * (dy > 0)
def gelu_exact_both():
    erf = np.vectorize(math.erf)
    def f(x):
        return 0.5 * x * (1 + erf(x / math.sqrt(2))), x
    def b(dy, x):
        return dy * (0.5 * (1 + erf(x / math.sqrt(2))) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi))
    return dict(forward=f, backward=b)
def gelu_second_half(dy, x):
    t = np.tanh(S.GELU_C * (x + S.GELU_A * x**3))
    return dy * (0.5 * (1 + t) + x * (1 - t**2) * S.GELU_C * (1 + 3 * S.GELU_A * x**2))  # 0.5 lost
def gelu_a_rounded(x):
    return 0.5 * x * (1 + np.tanh(S.GELU_C * (x + 0.0447 * x**3))), x

# softmax
def sm_diag_only(dy, y):
    return y * (1 - y) * dy  # only the diagonal of the Jacobian
def sm_unguarded_with_backward_missing():
    return dict(forward=softmax_without_guards, backward=lambda dy, y: y * dy)
def sm_log_domain(x, mask):  # log-sum-exp without the max: exp overflows to inf, log(inf) = inf
    z = np.where(mask, x, -np.inf)
    with np.errstate(all="ignore"):
        lse = np.log(np.exp(z).sum(-1, keepdims=True))
        y = np.exp(z - np.where(np.isfinite(lse), lse, np.inf))
    y = np.where(mask.any(-1, keepdims=True), y, 0.0)
    return y, y
def sm_mask_times(x, mask):  # masked scores set to 0 (x * mask), not -inf
    return S.softmax_forward(x * mask, np.ones_like(mask))
def sm_axis_minus2_masked(x, mask):
    z = np.where(mask, x, -np.inf)
    m = z.max(axis=-2, keepdims=True)
    e = np.exp(z - np.where(np.isfinite(m), m, 0))
    s = e.sum(axis=-2, keepdims=True)
    y = e / np.where(s > 0, s, 1)
    return y, y
# layernorm
def ln_ddof1_dbeta_mean():
    return dict(forward=layernorm_forward_with(ddof=1),
                backward=layernorm_backward_switched(dbeta_mean=True))
def ln_eps_out_gamma():
    return dict(forward=layernorm_forward_with(eps_inside=False),
                backward=layernorm_backward_switched(dbeta_mean=True))
def ln_dgamma_last_axis(dy, cache):
    dx, _, _ = S.layernorm_backward(dy, cache)
    return dx, (dy * cache[0]).sum(axis=-1), dy.sum(axis=-1)
def ln_var_sign(dy, cache):
    xhat, rstd, gamma = cache
    C = dy.shape[-1]
    g = dy * gamma
    dx = rstd * (g - g.mean(-1, keepdims=True) + xhat * (g * xhat).mean(-1, keepdims=True))
    return dx, (dy * xhat).reshape(-1, C).sum(0), dy.reshape(-1, C).sum(0)
# embedding
def emb_first_wins(dy, cache):
    ids, W_shape, P_shape, s, pad_id = cache
    C = dy.shape[-1]
    dW = np.zeros(W_shape)
    flat, rows = ids.reshape(-1), s * dy.reshape(-1, C)
    for i in reversed(range(flat.size)):
        dW[flat[i]] = rows[i]   # assignment: the first use of a token wins
    dW[pad_id] = 0.0
    dP = np.zeros(P_shape)
    dP[:ids.shape[1]] = dy.sum(0)
    return dW, dP
def emb_dP_used_rows_mean(dy, cache):
    dW, _ = S.embedding_backward(dy, cache)
    return dW, dy.mean(axis=0)
# sinusoidal
def sin_halves_cos_first(max_len, d_model):
    return sinusoidal_with(layout="halves", first=np.cos, second=np.sin)(max_len, d_model)
def sin_swapped_exp1(max_len, d_model):
    return sinusoidal_with(exponent=1, first=np.cos, second=np.sin)(max_len, d_model)
# dropout
def do_keep_prob_no_scale(x, rate, rng):
    keep = rng.random(x.shape) < rate   # rate read as keep probability, and no 1/(1-rate)
    return x * keep / rate, keep / rate
def do_new_mask_both():
    def backward(dy, cache):
        return dy * (np.random.default_rng(7).random(dy.shape) >= 0.5) / 0.5
    return dict(backward=backward)
# ffn
def ffn_gate_from_a(dy, cache):  # gate from the activation's OUTPUT with bias missing...
    lin_1, act, lin_2, activation = cache
    x, W_1 = lin_1
    da, dW_2, db_2 = S.linear_backward(dy, lin_2)
    dh = da * (x @ W_1 > 0) * 2.0 if activation == "relu" else M.ffn_backward(dy, cache)[0]
    if activation != "relu":
        return M.ffn_backward(dy, cache)
    dx, dW_1, db_1 = S.linear_backward(dh, lin_1)
    return dx, dW_1, db_1, dW_2, db_2


def ffn_no_gate_db_2_mean(dy, cache):  # no gate, and db_2 averaged over the rows
    dx, dW_1, db_1, dW_2, _ = ffn_backward_gate("none")(dy, cache)
    return dx, dW_1, db_1, dW_2, dy.reshape(-1, dy.shape[-1]).mean(0)


# the first layers: linear, activations, softmax, layer norm, embedding, positions, dropout, ffn
VARIANTS += [
    ("linear", "x^T dy, not dy^T x", "x^T dy", dict(backward=lin_dW_T_db_first)),
    ("linear", "flatten the leading axes", "flatten the leading axes", dict(backward=lin_dW_per_seq_mean)),
    ("relu", "not the mask (x > 0) alone", "x > 0", dict(backward=relu_mask_of_y)),
    ("relu", "not dy * (dy > 0)", "INPUT x", dict(backward=relu_gate_both)),
    ("gelu", "not the exact x * Phi(x)", "tanh approximation", gelu_exact_both()),
    ("gelu", "the second term is missing", "0.5 x (1 - tanh^2 u)",
     dict(backward=gelu_second_half)),
    ("gelu", "another cubic constant", "cubic", dict(forward=gelu_a_rounded)),
    ("softmax", "missing the `- <dy, y>` term", "<dy, y>", dict(backward=sm_diag_only)),
    ("softmax", "keys are ALL masked", "ALL masked", sm_unguarded_with_backward_missing()),
    ("softmax", "exp overflows", "exp overflows", dict(forward=sm_log_domain)),
    ("softmax", "exactly zero weight", "-inf", dict(forward=sm_mask_times)),
    ("softmax", "over the LAST axis", "LAST axis", dict(forward=sm_axis_minus2_masked)),
    ("layernorm", "population variance", "population variance", ln_ddof1_dbeta_mean()),
    ("layernorm", "eps goes inside", "eps goes inside", ln_eps_out_gamma()),
    ("layernorm", "dgamma and dbeta have shape", "shape (C,)",
     dict(backward=ln_dgamma_last_axis)),
    ("layernorm", "missing the variance term", "variance term", dict(backward=ln_var_sign)),
    ("layernorm", "dbeta sums dy", "dbeta",
     dict(backward=layernorm_backward_switched(dbeta_mean=True, gamma=False))),
    ("embedding", "receive BOTH gradients", "np.add.at", dict(backward=emb_first_wins)),
    ("embedding", "padding row's gradient must be zero", "padding row",
     dict(backward=embedding_backward_with(zero_pad=False, dP_rule="mean"))),  # and a second
    ("embedding", "the whole table P", "(L, C)", dict(backward=emb_dP_used_rows_mean)),
    ("sinusoidal", "not in two halves", "halves", dict(table=sin_halves_cos_first)),
    ("sinusoidal", "the exponent is 2i/C", "2i/C",
     dict(table=sinusoidal_with(exponent=1, layout="halves"))),
    ("sinusoidal", "sin goes on the even", "even features", dict(table=sin_swapped_exp1)),
    ("dropout", "probability of DROPPING", "DROPPING", dict(forward=do_keep_prob_no_scale)),
    ("dropout", "SAME mask", "SAME mask", do_new_mask_both()),
    ("ffn", "missing from the gate", "b_1", dict(backward=ffn_gate_from_a)),
    ("ffn", "activation's derivative", "derivative", dict(backward=ffn_no_gate_db_2_mean)),
]



def att_scale_by_keys(q, k, v, mask):  # divided by sqrt(S), the number of keys
    scale = 1.0 / math.sqrt(k.shape[1])
    P, _ = S.softmax_forward(q @ k.transpose(0, 2, 1) * scale, mask)
    return P @ v, (q, k, v, P, scale)
def att_mask_times_scores(q, k, v, mask):  # masked scores set to 0, not -inf
    scale = 1.0 / math.sqrt(q.shape[-1])
    P, _ = S.softmax_forward(q @ k.transpose(0, 2, 1) * scale * mask, np.ones_like(mask))
    return P @ v, (q, k, v, P, scale)
def att_no_inner_dv_doubled(dout, cache):
    dq, dk, dv = attention_backward_without_inner_term(dout, cache)
    return dq, dk, 2 * dv
def att_dv_summed_over_batch(dout, cache):
    dq, dk, dv = S.attention_backward(dout, cache)
    return dq, dk, dv.sum(axis=0)  # (S,D), like a weight gradient
def mha_fwd(**m):
    return mha_forward_like(**m)
def mha_paths_swapped(dy, cache):
    dx_q, dx_kv, dW_q, dW_k, dW_v, dW_o = S.mha_backward(dy, cache)
    x_q, x_kv, W_q, W_k, W_v, W_o, ctx, att, H = cache
    B = x_q.shape[0]
    dq, dk, dv = (S.merge_heads(d, B) for d in S.attention_backward(S.split_heads(dy @ W_o.T, H), att))
    return dx_q, dv @ W_v.T, dW_q, dW_k, dW_v, dW_o  # the key path left out, another way
def mha_two_weights_T(dy, cache):
    dx_q, dx_kv, dW_q, dW_k, dW_v, dW_o = S.mha_backward(dy, cache)
    return dx_q, dx_kv, dW_q, dW_k.T, dW_v.T, dW_o
ce = cross_entropy_forward_with
def ce_back(rule):
    def backward(dloss, cache):
        p, q, valid, n = cache
        d = (p - q) * valid[..., None]
        if rule == "per batch":
            return dloss * d / valid.shape[0]
        if rule == "no dloss, flipped":
            return (q - p) * valid[..., None] / n
        if rule == "flipped, no 1/n":
            return dloss * (q - p) * valid[..., None]
    return backward
def ce_probabilities_first(logits, targets, pad_id, smoothing):
    V = logits.shape[-1]
    with np.errstate(all="ignore"):
        p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)  # inf / inf for large logits
        q = np.full(logits.shape, smoothing / V)
        np.put_along_axis(q, targets[..., None], 1 - smoothing + smoothing / V, axis=-1)
        valid = targets != pad_id
        n = max(int(valid.sum()), 1)
        loss = float((-(q * np.log(p)).sum(-1) * valid).sum() / n)
    return loss, (p, q, valid, n)


# attention, multi-head attention, cross-entropy
VARIANTS += [
    ("attention", "the 1/sqrt(D) scale is missing", "1/sqrt(D)", dict(forward=att_scale_by_keys)),
    ("attention", "the mask is not applied", "masked keys", dict(forward=att_mask_times_scores)),
    ("attention", "missing the `- <dP, P>` term", "<dP, P>", dict(backward=att_no_inner_dv_doubled)),
    ("attention", "dv = P^T dout", "dv = P^T dout", dict(backward=att_dv_summed_over_batch)),
    ("mha", "transpose(0, 2, 1, 3)", "transpose(0, 2, 1, 3)",
     dict(forward=mha_fwd(split="reshape", scale_dim="C"))),
    ("mha", "the HEAD dim", "HEAD dim", dict(forward=mha_fwd(scale_dim="H"))),
    ("mha", "scale of the scores is missing", "scale of the scores is missing",
     dict(forward=mha_fwd(split="reshape", scale_dim="none"))),
    ("mha", "x_kv feeds BOTH", "BOTH", dict(backward=mha_paths_swapped)),
    ("mha", "has the weight's shape", "weight's shape", dict(backward=mha_two_weights_T)),
    ("cross_entropy", "over ALL V classes", "ALL V classes",
     dict(forward=ce(smoothing_over_others=True), backward=ce_back("per batch"))),
    ("cross_entropy", "carries a 1/n", "carries a 1/n", dict(backward=ce_back("per batch"))),
    ("cross_entropy", "multiply by the upstream gradient", "dloss is not multiplied",
     dict(backward=ce_back("no dloss, flipped"))),
    ("cross_entropy", "the sign is flipped", "sign is flipped", dict(backward=ce_back("flipped, no 1/n"))),
    ("cross_entropy", "exp overflows for large logits", "exp overflows",
     dict(forward=ce_probabilities_first)),
]



def block_residual_copy():
    """The first residual adds a COPY of x (Value(x.data)): only the sublayer path reaches x."""
    from npformer.nn.blocks import add, feed_forward, norm, self_attention
    from npformer.nn.tape import Value

    def block(run, prefix, x, mask):
        attn, ffn = f"{prefix}.self_attn", f"{prefix}.ffn"
        h = self_attention(run, attn, norm(run, f"{prefix}.norm1", x), mask)
        x = add(run, attn + ".res", Value(x.data, "x copy"), h)
        return add(run, ffn + ".res", x, feed_forward(run, ffn, norm(run, f"{prefix}.norm2", x)))
    return block
def block_post_ln_beta_array():
    """Post-LN, with the norms' beta passed as plain arrays."""
    from npformer.nn.blocks import add, feed_forward, self_attention
    from npformer.nn.layers import layernorm_backward, layernorm_forward

    def block(run, prefix, x, mask):
        attn, ffn = f"{prefix}.self_attn", f"{prefix}.ffn"

        def ln(name, v):
            return run.tape.call(name, layernorm_forward, layernorm_backward, v,
                                 run.param(name + ".gamma"), run.params[name + ".beta"],
                                 run.cfg.ln_eps)
        x = ln(f"{prefix}.norm1", add(run, attn + ".res", x, self_attention(run, attn, x, mask)))
        return ln(f"{prefix}.norm2", add(run, ffn + ".res", x, feed_forward(run, ffn, x)))
    return block
def block_beta_array(decoder=False):
    """One norm's beta passed as a plain array: the tape never gives it a gradient."""
    from npformer.nn.blocks import add, cross_attention, feed_forward, norm, self_attention
    from npformer.nn.layers import layernorm_backward, layernorm_forward

    def ln_beta_array(run, name, v):
        return run.tape.call(name, layernorm_forward, layernorm_backward, v,
                             run.param(name + ".gamma"), run.params[name + ".beta"],
                             run.cfg.ln_eps)
    def encoder(run, prefix, x, mask):
        attn, ffn = f"{prefix}.self_attn", f"{prefix}.ffn"
        x = add(run, attn + ".res", x, self_attention(run, attn, norm(run, f"{prefix}.norm1", x), mask))
        return add(run, ffn + ".res", x, feed_forward(run, ffn, ln_beta_array(run, f"{prefix}.norm2", x)))
    def dec(run, prefix, y, mem, self_mask, cross_mask):
        attn, cross, ffn = f"{prefix}.self_attn", f"{prefix}.cross_attn", f"{prefix}.ffn"
        y = add(run, attn + ".r", y, self_attention(run, attn, norm(run, f"{prefix}.norm1", y),
                                                    self_mask))
        y = add(run, cross + ".r", y, cross_attention(run, cross, norm(run, f"{prefix}.norm2", y),
                                                      mem, cross_mask))
        h = ln_beta_array(run, f"{prefix}.norm3", y)
        return add(run, ffn + ".r", y, feed_forward(run, ffn, h))
    return dec if decoder else encoder
def decoder_memory_copy_beta_array():
    """memory passed as a copy, and norm3's beta as a plain array."""
    from npformer.nn.blocks import add, cross_attention, feed_forward, norm, self_attention
    from npformer.nn.layers import layernorm_backward, layernorm_forward
    from npformer.nn.tape import Value

    def block(run, prefix, y, mem, self_mask, cross_mask):
        attn, cross, ffn = f"{prefix}.self_attn", f"{prefix}.cross_attn", f"{prefix}.ffn"
        y = add(run, attn + ".r", y, self_attention(run, attn, norm(run, f"{prefix}.norm1", y),
                                                    self_mask))
        y = add(run, cross + ".r", y, cross_attention(run, cross, norm(run, f"{prefix}.norm2", y),
                                                      Value(mem.data, "memory copy"), cross_mask))
        h = run.tape.call(f"{prefix}.norm3", layernorm_forward, layernorm_backward, y,
                          run.param(f"{prefix}.norm3.gamma"), run.params[f"{prefix}.norm3.beta"],
                          run.cfg.ln_eps)
        return add(run, ffn + ".r", y, feed_forward(run, ffn, h))
    return block
def decoder_ffn_residual_copy():
    """The last residual adds a copy of y: only the feed-forward path reaches it."""
    from npformer.nn.blocks import add, cross_attention, feed_forward, norm, self_attention
    from npformer.nn.tape import Value

    def block(run, prefix, y, mem, self_mask, cross_mask):
        attn, cross, ffn = f"{prefix}.self_attn", f"{prefix}.cross_attn", f"{prefix}.ffn"
        y = add(run, attn + ".r", y, self_attention(run, attn, norm(run, f"{prefix}.norm1", y),
                                                    self_mask))
        y = add(run, cross + ".r", y, cross_attention(run, cross, norm(run, f"{prefix}.norm2", y),
                                                      mem, cross_mask))
        h = feed_forward(run, ffn, norm(run, f"{prefix}.norm3", y))
        return add(run, ffn + ".r", Value(y.data, "y copy"), h)
    return block
def output_loss_blocks_kept(x, E, b, targets, pad_id):
    """Block by block, but every block's logits kept in a list: the whole (N, V) after all."""
    C = x.shape[-1]
    x2, t2 = x.reshape(-1, C), targets.reshape(-1)
    kept = [x2[i:i + 64] @ E.T + b for i in range(0, len(x2), 64)]
    logits = np.concatenate(kept)
    loss, cache = S.cross_entropy_forward(logits, t2, pad_id, 0.0)
    d = S.cross_entropy_backward(1.0, cache)
    return loss, ((d @ E).reshape(x.shape), d.T @ x2, d.sum(axis=0))
def pool_real_sum_over_T(x, key_ok, mode):  # padding left out of the sum, but / T
    y, w = M.pool_forward(x, key_ok, mode)
    if mode == "mean":
        w = key_ok / key_ok.shape[1]
        y = np.einsum("bt,btc->bc", w, x)
    return y, w
def pool_backward_sums(dy, w):  # forward right; the backward sums: (w > 0), not w
    return M.pool_backward(dy, (w > 0) * 1.0)


# blocks on the tape, the fused output loss, pooling
VARIANTS += [
    ("block", "must get the SUM of both gradients", "SUM", dict(block=block_residual_copy())),
    ("block", "this exercise is pre-LN", "pre-LN", dict(block=block_post_ln_beta_array())),
    ("block", "some parameters got no gradient", "no gradient", dict(block=block_beta_array())),
    ("decoder_block", "memory gets no gradient", "memory gets no gradient",
     dict(block=decoder_memory_copy_beta_array())),
    ("decoder_block", "out is right but dy is not", "dy is not", dict(block=decoder_ffn_residual_copy())),
    ("decoder_block", "some parameters got no gradient", "no gradient",
     dict(block=block_beta_array(decoder=True))),
    ("output_loss", "never holds the whole (N, V) logits", "(N, V) logits",
     dict(forward=output_loss_blocks_kept, backward=lambda dloss, c: tuple(dloss * g for g in c))),
    ("pooling", "the mean runs over the REAL tokens", "divides by T", dict(forward=pool_real_sum_over_T)),
    ("pooling", "'last' is the last REAL token", "last REAL token",
     dict(forward=pool_forward_with(last="end", mean="sum"))),
    ("pooling", "'mean' divides by the number", "1/n is missing", dict(backward=pool_backward_sums)),
]



def adamw_t_from_zero_in_m(p, g, m, v, t, lr, betas, eps, weight_decay):
    b1, b2 = betas
    p = p * (1 - lr * weight_decay)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    with np.errstate(divide="ignore", invalid="ignore"):
        m_hat = m / (1 - b1 ** (t - 1))  # only m's correction counts t from 0
    return p - lr * m_hat / (np.sqrt(v / (1 - b2**t)) + eps), m, v
aw = adamw_step_switched
def clip_flags(**flags):
    """clip_grad_norm with some of its mistakes (the flags of CLIP's switches)."""
    def clip(grads, max_norm):
        norms = {k: math.sqrt(float((g**2).sum())) for k, g in grads.items()}
        if flags.get("sum_of_norms"):
            total = sum(norms.values())
        else:
            total = math.sqrt(sum(n**2 for n in norms.values()))
        eps = 0.0 if flags.get("no_eps") else 1e-6
        scaled = {}
        for k, g in grads.items():
            coef = max_norm / ((norms[k] if flags.get("per_tensor") else total) + eps)
            if coef < 1.0 or flags.get("always"):
                scaled[k] = g * coef
        if not flags.get("not_in_place"):
            for k, g in scaled.items():
                grads[k][...] = g
        if flags.get("norm_after"):
            return math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
        return total
    return clip
def lm(**kw):
    return dict(forward=lm_loss_forward_with(**kw), backward=lm_loss_backward_with)
def bpe_flags(unweighted=False, largest=False, right_to_left=False):
    def merge_step(words, freqs, new_id):
        counts = {}
        for word, f in zip(words, freqs):
            for pair in zip(word, word[1:]):
                counts[pair] = counts.get(pair, 0) + (1 if unweighted else f)
        top = max(counts.values())
        ties = sorted(p for p, c in counts.items() if c == top)
        pair = ties[-1] if largest else ties[0]
        out = []
        for word in words:
            w = list(word)[::-1] if right_to_left else list(word)
            target = pair[::-1] if right_to_left else pair
            merged, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == target:
                    merged.append(new_id)
                    i += 2
                else:
                    merged.append(w[i])
                    i += 1
            out.append(merged[::-1] if right_to_left else merged)
        return pair, out
    return merge_step
def power_law_flags(sign=False, floor_ignored=False, a_log=False, swapped=False):
    def fit(x, y, floor):
        lx, ly = np.log(x), np.log(y if floor_ignored else y - floor)
        if swapped:
            s, c = np.polyfit(ly, lx, 1)
            slope, intercept = 1 / s, -c / s
        else:
            slope, intercept = np.polyfit(lx, ly, 1)
        return (intercept if a_log else math.exp(intercept)), (slope if sign else -slope)
    return fit
def icl_flags(sign=False, padding_counted=False, one_based=False, ratio=False, unstable=False):
    def score(logits, targets, pad_id, early, late):
        with np.errstate(all="ignore"):
            p = np.exp(logits if unstable else logits - logits.max(-1, keepdims=True))
            p = p / p.sum(-1, keepdims=True)
            loss = -np.log(np.take_along_axis(p, targets[..., None], -1)[..., 0])
        ok = np.ones(targets.shape, bool) if padding_counted else targets != pad_id
        e, l_ = (early - 1, late - 1) if one_based else (early, late)
        lo, hi = loss[ok[:, e], e].mean(), loss[ok[:, l_], l_].mean()
        s = hi / lo if ratio else hi - lo
        return -s if sign else s
    return score


# training (AdamW, clipping) and the LLM half: each a catalogued mistake with a second one
VARIANTS += [
    ("adamw", "a division by zero", "division by zero", dict(step=adamw_t_from_zero_in_m)),
    ("adamw", "bias correction of m is missing", "bias correction of m",
     dict(step=aw(bias_m=False, eps_inside=True))),
    ("adamw", "bias correction of v is missing", "bias correction of v",
     dict(step=aw(bias_v=False, decay_after=True))),
    ("adamw", "Adam with L2", "Adam with L2", dict(step=aw(decoupled=False, bias_m=False))),
    ("adamw", "scaled by the learning rate", "scaled by the learning rate",
     dict(step=aw(decay_times_lr=False, betas_swapped=True))),
    ("adamw", "eps goes outside", "eps goes outside", dict(step=aw(eps_inside=True, decay_after=True))),
    ("adamw", "betas are swapped", "betas are swapped", dict(step=aw(betas_swapped=True, bias_m=False))),
    ("adamw", "comes before the Adam update", "before the Adam update",
     dict(step=aw(decay_after=True, betas_swapped=True))),
    ("clip", "the norm is GLOBAL", "GLOBAL", dict(clip=clip_flags(per_tensor=True, no_eps=True))),
    ("clip", "clip only when", "clip only when", dict(clip=clip_flags(always=True, norm_after=True))),
    ("clip", "the 1e-6 is missing", "1e-6", dict(clip=clip_flags(no_eps=True, sum_of_norms=True))),
    ("clip", "norm BEFORE clipping", "BEFORE clipping",
     dict(clip=clip_flags(norm_after=True, per_tensor=True))),
    ("clip", "not the sum of the norms", "sum of the norms",
     dict(clip=clip_flags(sum_of_norms=True, always=True))),
    ("clip", "IN PLACE", "IN PLACE", dict(clip=clip_flags(not_in_place=True, sum_of_norms=True))),
    ("lm_loss", "predict the NEXT token", "NEXT token", lm(pair="same", pad="counted")),
    ("lm_loss", "the shift goes forward", "shift goes forward", lm(pair="backward", reduce="sum")),
    ("lm_loss", "padding targets must not count", "padding targets", lm(pad="counted", reduce="sum")),
    ("lm_loss", "MEAN over the predicted", "MEAN", lm(reduce="sum", pair="same")),
    ("bpe_merge", "sum of the FREQUENCIES", "FREQUENCIES",
     dict(merge=bpe_flags(unweighted=True, largest=True))),
    ("bpe_merge", "ties go to the smaller pair", "smaller pair",
     dict(merge=bpe_flags(largest=True, right_to_left=True))),
    ("bpe_merge", "merge left to right", "left to right",
     dict(merge=bpe_flags(right_to_left=True, unweighted=True))),
    ("power_law", "alpha is MINUS the slope", "MINUS the slope",
     dict(fit=power_law_flags(sign=True, a_log=True))),
    ("power_law", "subtract the floor first", "subtract the floor",
     dict(fit=power_law_flags(floor_ignored=True, swapped=True))),
    ("power_law", "a = exp(intercept)", "exp(intercept)",
     dict(fit=power_law_flags(a_log=True, floor_ignored=True))),
    ("power_law", "regress log y on log x", "regress log y",
     dict(fit=power_law_flags(swapped=True, sign=True))),
    ("icl_score", "exp overflows", "exp overflows", dict(score=icl_flags(unstable=True, one_based=True))),
    ("icl_score", "negative when the context helps", "loss(late) - loss(early)",
     dict(score=icl_flags(sign=True, one_based=True))),
    ("icl_score", "over the real targets only", "real targets",
     dict(score=icl_flags(padding_counted=True, ratio=True))),
    ("icl_score", "0-based positions", "0-based",
     dict(score=icl_flags(one_based=True, padding_counted=True))),
    ("icl_score", "a DIFFERENCE of losses", "DIFFERENCE", dict(score=icl_flags(ratio=True, sign=True))),
]



def filter_flags(k_off=0, p_rule="right", renormalise=True, ascending=False):
    """filter_logits written row by row, with some of its mistakes."""
    def filter_logits(logits, top_k, top_p):
        out = np.array(logits, dtype=float)
        for row, original in zip(out, np.array(logits, dtype=float)):
            order = np.argsort(row) if ascending else np.argsort(-row)
            if 0 < top_k < len(row):
                row[order[top_k + k_off:]] = -np.inf
            if top_p < 1.0:
                z = (row if renormalise else original)[order]
                p = np.exp(z - z.max())
                p /= p.sum()
                total = 0.0
                for i, token in enumerate(order):
                    if p_rule == "few":
                        total += p[i]
                        if total >= top_p:
                            row[token] = -np.inf
                        continue
                    if total >= top_p:
                        if p_rule == "many" and total - p[i - 1] < top_p:
                            total += p[i]
                            continue  # one more than the nucleus
                        row[token] = -np.inf
                    total += p[i]
        return out
    return filter_logits
def kv_flags(sees_self=True, past=True, scale="D", window=None):
    def step(x, W_q, W_k, W_v, W_o, past_k, past_v, n_heads):
        B, _, C = x.shape
        D = C // n_heads

        def heads(a):
            return a.reshape(B, 1, n_heads, D).transpose(0, 2, 1, 3)
        q, k_new, v_new = heads(x @ W_q), heads(x @ W_k), heads(x @ W_v)
        k = np.concatenate([past_k, k_new], axis=2)
        v = np.concatenate([past_v, v_new], axis=2)
        keys, values = (k, v) if past else (k_new, v_new)
        if not sees_self:
            keys, values = past_k, past_v  # attends before appending: nothing at step 0
        s = q @ keys.transpose(0, 1, 3, 2) * {"D": 1 / math.sqrt(D), "none": 1.0,
                                              "C": 1 / math.sqrt(C)}[scale]
        if s.shape[-1] == 0:
            ctx = np.zeros_like(q)
        else:
            P = np.exp(s - s.max(axis=-1, keepdims=True))
            ctx = (P / P.sum(axis=-1, keepdims=True)) @ values
        y = ctx.transpose(0, 2, 1, 3).reshape(B, 1, C) @ W_o
        if window:  # the cache keeps only the last `window` positions
            return y, k[:, :, -window:], v[:, :, -window:]
        return y, k, v
    return step


# top-k / top-p and the KV step: combinations, a partial cache
VARIANTS += [
    ("filter", "keeps one token too few", "one token too few",
     dict(filter=filter_flags(p_rule="few", k_off=1))),
    ("filter", "keeps one token too many", "one token too many",
     dict(filter=filter_flags(p_rule="many", k_off=-1))),
    ("filter", "the k largest logits", "the k largest",
     dict(filter=filter_flags(k_off=-1, renormalise=False))),
    ("filter", "not k + 1", "not k + 1", dict(filter=filter_flags(k_off=1, p_rule="many"))),
    ("filter", "taken from what top-k left", "what top-k left",
     dict(filter=filter_flags(renormalise=False, p_rule="few"))),
    ("filter", "DECREASING order", "DECREASING", dict(filter=filter_flags(ascending=True, k_off=1))),
    ("kv_step", "attend to itself too", "attend to itself", dict(step=kv_flags(sees_self=False))),
    ("kv_step", "attend over the cached past", "cached past", dict(step=kv_flags(past=False, window=1))),
    ("kv_step", "divided by sqrt(D)", "sqrt(D)", dict(step=kv_flags(scale="C"))),
    ("kv_step", "grows by one position per step", "axis 2", dict(step=kv_flags(window=2))),
]


# ----------------------------------------------------------------- the recurrent layer (BPTT)
def rnn_forward_keeping_a(x, h0, W_x, W_h, b):
    """The right forward, with the pre-activations a_t kept in the cache too."""
    B, T, C = x.shape
    h, a = np.empty_like(x), np.empty_like(x)
    prev = h0
    for t in range(T):
        a[:, t] = x[:, t] @ W_x + prev @ W_h + b
        h[:, t] = prev = np.tanh(a[:, t])
    return h, (x, h0, h, a, W_x, W_h)


def rnn_backward_with(carry="full", slope="h", state="h_prev", dh0="carry"):
    """BPTT as a learner writes it, with mistakes chosen by name.

    carry: "full", "none", "one step" (truncated after one step), "no W_h^T";
    slope: tanh' from "h" (right), "a" (pre-activation) or "h_prev"; state: the state
    dW_h pairs with da_t: "h_prev" (right), "h", "h_1 first" (h_1 where h_0 belongs);
    dh0: "carry" (right), "zero", "da_1" (no W_h^T), "da_1 W_h" (untransposed).
    """
    def backward(dh, cache):
        x, h0, h, a, W_x, W_h = cache
        B, T, C = x.shape
        h_prev = np.concatenate([h0[:, None], h[:, :-1]], axis=1)
        d = {"h": 1 - h**2, "a": 1 - a**2, "h_prev": 1 - h_prev**2}[slope]
        da = np.zeros_like(h)
        back = np.zeros_like(h0)  # what step t + 1 sends to h_t
        for t in reversed(range(T)):
            da[:, t] = (dh[:, t] + back) * d[:, t]
            if carry == "full":
                back = da[:, t] @ W_h.T
            elif carry == "one step":  # only dy_{t}'s own contribution goes back a step
                back = (dh[:, t] * d[:, t]) @ W_h.T
            elif carry == "no W_h^T":
                back = da[:, t]
        states = {"h_prev": h_prev, "h": h,
                  "h_1 first": np.concatenate([h[:, :1], h[:, :-1]], axis=1)}[state]
        da2 = da.reshape(-1, C)
        first = da[:, 0]
        dh_0 = {"carry": first @ W_h.T, "zero": np.zeros_like(h0), "da_1": first,
                "da_1 W_h": first @ W_h}[dh0]
        return ((da2 @ W_x.T).reshape(x.shape), dh_0, x.reshape(-1, C).T @ da2,
                states.reshape(-1, C).T @ da2, da2.sum(axis=0))
    return dict(forward=rnn_forward_keeping_a, backward=backward)


PLANTED += [
    ("rnn", "not carried back", rnn_backward_with(carry="none")),
    ("rnn", "1 - a_t^2, the pre-activation", rnn_backward_with(slope="a")),
    ("rnn", "from h_{t-1}, the step before", rnn_backward_with(slope="h_prev")),
    ("rnn", "not h_t^T da_t", rnn_backward_with(state="h")),
    ("rnn", "dh0 is missing", rnn_backward_with(dh0="zero")),
]

# partial versions (found by the structure of the error) and combinations (both named)
VARIANTS += [
    ("rnn", "not carried back", "carry back through h_{t-1}",
     rnn_backward_with(carry="one step")),  # truncated BPTT: one step back, no further
    ("rnn", "not carried back", "carry back through h_{t-1}",
     rnn_backward_with(carry="no W_h^T")),
    ("rnn", "1 - a_t^2, the pre-activation", "1 - a_t^2",
     rnn_backward_with(slope="a", state="h")),
    ("rnn", "from h_{t-1}, the step before", "from h_{t-1}",
     rnn_backward_with(slope="h_prev", dh0="zero")),
    ("rnn", "not h_t^T da_t", "h_0, the initial state",
     rnn_backward_with(state="h_1 first")),  # wrong at the first step only
    ("rnn", "not h_t^T da_t", "not h_t^T da_t",
     rnn_backward_with(state="h", carry="none")),
    ("rnn", "dh0 is missing", "leaves out W_h^T", rnn_backward_with(dh0="da_1")),
    ("rnn", "dh0 is missing", "W_h must be transposed", rnn_backward_with(dh0="da_1 W_h")),
]


# ----------------------------------------------------------------- which hints have a variant
# Catalogued hints that cannot have a variant in the sense of issue #21: {(exercise, words of
# the hint): why}. Every other catalogued hint needs a variant in VARIANTS. None is needed
# now: where only one set of numbers carries a mistake (top-p one token short: every
# spelling drops the same token), its variant is that mistake together with another one.
NO_VARIANT = {}


def catalogued_hints():
    """[(exercise, message)]: every catalogued hint (checker.Hint) and switched mistake."""
    from npformer.exercises import EXERCISES

    hints = []
    for name, exercise in EXERCISES.items():
        hints += [(name, hint.message) for hint in exercise.hints]
        if exercise.mistakes:
            hints += [(name, message) for message in exercise.mistakes.flags.values()]
    return hints


def hint_named(name, words):
    """The one catalogued message of exercise `name` that contains `words`."""
    found = [m for n, m in catalogued_hints() if n == name and words in m]
    if len(found) != 1:
        raise LookupError(f"{name}: {len(found)} catalogued hints contain {words!r}")
    return found[0]


def answer_outputs(name, functions, seed=0):
    """What the checker reads from `functions`, case by case: [{output: value}].

    An answer that raises gives what it produced before raising.
    """
    from npformer.exercises import EXERCISES
    from npformer.exercises.checker import layer_outputs

    exercise = EXERCISES[name]
    outputs = []
    for case in exercise.make_cases(np.random.default_rng(seed)):
        got = {}
        try:
            with np.errstate(all="ignore"):
                (exercise.learner_outputs or layer_outputs)(exercise, functions, case, got)
        except Exception:  # a crash is an answer too: its outputs so far
            pass
        outputs.append(got)
    return outputs


def same_outputs(a, b):
    """Two answers' outputs (answer_outputs) are equal in every case."""
    from npformer.exercises.diagnose import _same

    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x) for x, y in zip(a, b))


def planted_for(name, message):
    """The PLANTED wrong answers that get `message` (the catalogued spellings of it)."""
    return [wrong for n, words, wrong in PLANTED if n == name and any(
        w in message for w in ((words,) if isinstance(words, str) else words))]


def hint_coverage():
    """{(exercise, message): [place words of its variants]} for every catalogued hint.

    A variant counts for the hint it names (VARIANTS' second field); whether it fails,
    gets a hint naming its place, and differs from the catalogued spellings is what
    test_exercises.py asserts of each variant.
    """
    table = {key: [] for key in catalogued_hints()}
    for name, of_hint, place, _ in VARIANTS:
        if of_hint is not None:
            table[(name, hint_named(name, of_hint))].append(place)
    return table


def with_model_answers(name, wrong):
    """The model answer's functions for exercise `name`, with `wrong` replacing some."""
    from npformer.exercises import EXERCISES

    exercise = EXERCISES[name]
    functions = {}
    for role, function_name in zip(exercise.roles, exercise.functions):
        module = next(m for m in (S, M, L) if hasattr(m, function_name))
        functions[role] = getattr(module, function_name)
    return {**functions, **wrong}


def variant_verdict(name, of_hint, place, wrong):
    """'' if the variant is a genuine one that gets its place named, else what is wrong."""
    from npformer.exercises import check

    with np.errstate(all="ignore"):
        result = check(name, verbose=False, **with_model_answers(name, wrong))
    if result:
        return "passes the check"
    if not any(place in hint for hint in result.hints):
        return f"no hint names {place!r}: {result.hints}"
    if of_hint is not None:
        mine = answer_outputs(name, with_model_answers(name, wrong))
        for planted in planted_for(name, hint_named(name, of_hint)):
            if same_outputs(mine, answer_outputs(name, with_model_answers(name, planted))):
                return "gives the same numbers as a catalogued spelling (PLANTED)"
    return ""


def measure():
    """Every catalogued hint, and whether a genuine variant of it gets its place named.

    Prints one line per hint and returns (hints with such a variant, hints). Run:
    PYTHONPATH=. python tests/exercise_mistakes.py
    """
    verdicts = {v[:3]: variant_verdict(*v) for v in VARIANTS if v[1] is not None}
    covered = 0
    for (name, message), places in hint_coverage().items():
        good = [p for (n, of, p), verdict in verdicts.items()
                if n == name and hint_named(n, of) == message and not verdict]
        bad = [f"{p}: {verdict}" for (n, of, p), verdict in verdicts.items()
               if n == name and hint_named(n, of) == message and verdict]
        exception = [why for (n, words), why in NO_VARIANT.items()
                     if n == name and words in message]
        covered += bool(good)
        state = ("variant" if good else "EXCEPTION" if exception else "missing")
        print(f"{state:9s} {name:14s} {message[:70]}" + "".join(f"\n{'':24s}{b}" for b in bad))
    total = len(hint_coverage())
    print(f"{covered} of {total} catalogued hints have a genuine variant; "
          f"{len(NO_VARIANT)} listed exceptions")
    return covered, total


if __name__ == "__main__":
    measure()
