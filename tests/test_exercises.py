"""The exercise checker grades fairly and explains itself.

- every model answer in npformer/exercises/solutions.py passes;
- every hint has a deliberately wrong answer below that fails AND gets that hint
  (a test proves no hint is left without one);
- the references the checker grades against agree with central differences, and
  the attention references with PyTorch when it is installed;
- the stubs of notebooks/exercises_backward.ipynb, as shipped, are reported as
  "not implemented yet" without a traceback.
"""
import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from npformer.exercises import EXERCISES, check, check_functions
from npformer.exercises import solutions as S
from npformer.exercises.catalog_attention import mha_with
from npformer.exercises.checker import Case, compare

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "exercises_backward.ipynb"
FD_EPS = 1e-6
FD_TOL = 1e-7  # reference vs central differences on the whole tensor (float64)


def answers(name, **replace):
    """The model answer's functions for an exercise, with some replaced by wrong ones."""
    exercise = EXERCISES[name]
    functions = {role: getattr(S, fn) for role, fn in zip(exercise.roles, exercise.functions)}
    return {**functions, **replace}


@pytest.mark.parametrize("name", list(EXERCISES))
def test_every_solution_passes(name):
    result = check(name, verbose=False, **answers(name))
    assert result, result.report()
    assert result.status == "pass" and result.n_passed == len(result.cases) >= 3
    assert "cases pass (all cases pass)" in result.report()


def test_a_small_error_fails():
    """The tolerance is tight: an answer off by 1e-5 relative is not accepted."""
    def forward(x, W, b):
        y, cache = S.linear_forward(x, W, b)
        return y * (1 + 1e-5), cache
    result = check("linear", verbose=False, forward=forward, backward=S.linear_backward)
    assert not result and result.status == "fail"
    line = next(line for line in result.cases[0].lines if line.what == "y")
    # relative error = ||a-b|| / (||a|| + ||b||)
    assert "largest error" in line.detail and "relative error 5.0e-06" in line.detail


def test_compare_reports_where():
    want = np.zeros((2, 3))
    got = want.copy()
    got[1, 2] = 0.5
    line = compare("dx", got, want)
    assert not line.ok and "at [1, 2]" in line.detail and "yours 0.5" in line.detail
    assert "shape (3, 2)" in compare("dx", want.T, want).detail
    assert compare("dx", want, want).ok


# ----------------------------------------------------------------- wrong answers, one per hint
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
    from npformer.blocks import add, feed_forward, norm, self_attention
    from npformer.layers import layernorm_backward, layernorm_forward
    from npformer.tape import Value

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
WRONG = [
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
    ("layernorm", "not constants",
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


@pytest.mark.parametrize("name,words,wrong", WRONG,
                         ids=[f"{name}: {words}" for name, words, _ in WRONG])
def test_wrong_answer_fails_with_its_hint(name, words, wrong):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), np.errstate(all="ignore"):
        result = check(name, **answers(name, **wrong))
    assert not result and result.status == "fail", out.getvalue()
    assert any(words in hint for hint in result.hints), (
        f"expected a hint containing {words!r}; the report was:\n{out.getvalue()}")
    assert "Traceback" not in out.getvalue()


def test_every_hint_has_a_wrong_answer():
    tested = {(name, words) for name, words, _ in WRONG}
    for name, exercise in EXERCISES.items():
        for hint in exercise.hints:
            assert any(n == name and words in hint.message for n, words in tested), (
                f"{name}: no wrong answer in WRONG gets the hint {hint.message!r}")


def test_an_unknown_mistake_points_to_the_derivation():
    result = check("linear", verbose=False, forward=S.linear_forward,
                   backward=lambda dy, c: tuple(2 * g for g in S.linear_backward(dy, c)))
    assert not result and not result.hints
    assert any("docs/derivations/linear.md" in note for note in result.notes)


def test_a_crash_is_one_line_not_a_traceback(capsys):
    result = check("softmax", forward=lambda x, mask: (x[5, 5, 5], None))
    text = capsys.readouterr().out
    assert not result and "forward raised IndexError" in text and "Traceback" not in text


def test_forward_alone_is_incomplete():
    result = check("layernorm", verbose=False, forward=S.layernorm_forward)
    assert not result and result.status == "incomplete"
    assert "layernorm_backward: not given, not checked" in result.report()


def test_check_functions_finds_answers_by_name():
    results = check_functions(vars(S), verbose=False)
    assert set(results) == set(EXERCISES) and all(results.values())


# ----------------------------------------------------------------- the references are right
def numerical_gradient(f, x):
    grad = np.zeros_like(x)
    for i in range(x.size):
        old = x.flat[i]
        x.flat[i] = old + FD_EPS
        plus = f()
        x.flat[i] = old - FD_EPS
        minus = f()
        x.flat[i] = old
        grad.flat[i] = (plus - minus) / (2 * FD_EPS)
    return grad


@pytest.mark.parametrize("name", [n for n, e in EXERCISES.items() if e.wrt])
def test_reference_gradients_match_central_differences(name):
    exercise = EXERCISES[name]
    for case in exercise.make_cases(np.random.default_rng(1)):
        want = exercise.reference(case)
        inputs = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in case.inputs.items()}
        out_name = exercise.outputs[0]

        def loss():
            c = Case(case.label, inputs, case.dout)
            return float((np.asarray(exercise.reference(c)[out_name]) * case.dout).sum())
        for input_name, grad_name in exercise.wrt:
            numeric = numerical_gradient(loss, inputs[input_name])
            analytic = np.asarray(want[grad_name], float)
            if exercise.fd_allowed:  # the padding row: zero by convention, not by calculus
                keep = exercise.fd_allowed(case, input_name).reshape(analytic.shape)
                numeric, analytic = numeric[keep], analytic[keep]
            err = np.linalg.norm(analytic - numeric) / max(
                np.linalg.norm(analytic) + np.linalg.norm(numeric), 1e-30)
            assert err < FD_TOL or np.abs(numeric).max() < 1e-8, (
                f"{name}, {case.label}: reference {grad_name} vs central differences: "
                f"relative error {err:.1e}")


def test_attention_reference_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    B, T, S_, D = 2, 3, 4, 5
    q, k, v = rng.standard_normal((B, T, D)), rng.standard_normal((B, S_, D)), \
        rng.standard_normal((B, S_, D))
    mask = np.ones((B, 1, S_), dtype=bool)
    mask[1, 0, 2:] = False  # padded keys; no row is fully masked (torch would give NaN)
    dout = rng.standard_normal((B, T, D))
    out, cache = S.attention_forward(q, k, v, mask)
    dq, dk, dv = S.attention_backward(dout, cache)

    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    t_out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv,
                                                             attn_mask=torch.tensor(mask))
    t_out.backward(torch.tensor(dout))
    for name, ours, theirs in (("out", out, t_out), ("dq", dq, tq.grad), ("dk", dk, tk.grad),
                               ("dv", dv, tv.grad)):
        diff = np.abs(ours - theirs.detach().numpy())
        assert diff.max() < 1e-12, f"{name}: max diff {diff.max():.1e}, mean {diff.mean():.1e}"


def test_mha_reference_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    B, T, S_, C, H = 2, 3, 4, 6, 3
    x_q, x_kv = rng.standard_normal((B, T, C)), rng.standard_normal((B, S_, C))
    W = {n: rng.standard_normal((C, C)) / math.sqrt(C) for n in "qkvo"}
    mask = np.ones((B, 1, S_), dtype=bool)
    mask[0, 0, 3] = False
    dy = rng.standard_normal((B, T, C))
    y, cache = S.mha_forward(x_q, x_kv, W["q"], W["k"], W["v"], W["o"], mask, H)
    dx_q, dx_kv, dW_q, dW_k, dW_v, dW_o = S.mha_backward(dy, cache)

    mha = torch.nn.MultiheadAttention(C, H, bias=False, batch_first=True, dtype=torch.float64)
    with torch.no_grad():  # torch computes x @ weight.T: its weights are our W transposed
        mha.in_proj_weight.copy_(torch.tensor(np.concatenate([W["q"].T, W["k"].T, W["v"].T])))
        mha.out_proj.weight.copy_(torch.tensor(W["o"].T))
    tq, tkv = torch.tensor(x_q, requires_grad=True), torch.tensor(x_kv, requires_grad=True)
    t_y, _ = mha(tq, tkv, tkv, key_padding_mask=torch.tensor(~mask[:, 0, :]),  # True = ignore
                 need_weights=False)
    t_y.backward(torch.tensor(dy))
    grad_in = mha.in_proj_weight.grad.numpy()
    pairs = (("y", y, t_y.detach().numpy()), ("dx_q", dx_q, tq.grad.numpy()),
             ("dx_kv", dx_kv, tkv.grad.numpy()), ("dW_q", dW_q, grad_in[:C].T),
             ("dW_k", dW_k, grad_in[C:2 * C].T), ("dW_v", dW_v, grad_in[2 * C:].T),
             ("dW_o", dW_o, mha.out_proj.weight.grad.numpy().T))
    for name, ours, theirs in pairs:
        diff = np.abs(ours - theirs)
        assert diff.max() < 1e-12, f"{name}: max diff {diff.max():.1e}, mean {diff.mean():.1e}"


# ----------------------------------------------------------------- the notebook's stubs
def test_stubs_as_shipped_say_not_implemented_yet():
    """The notebook's code cells, run in one namespace: every exercise is not implemented yet.

    No kernel is needed, and nothing raises.
    """
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    namespace, out = {}, io.StringIO()
    with contextlib.redirect_stdout(out):
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                exec(compile("".join(cell["source"]), NOTEBOOK.name, "exec"), namespace)
    text = out.getvalue()
    for name in EXERCISES:
        assert f"{name}: not implemented yet" in text, f"no friendly message for {name}:\n{text}"
    assert "Traceback" not in text and "raised" not in text


# ----------------------------------------------------------------- the command line
def test_cli_lists_and_grades_a_file(tmp_path, capsys):
    from npformer.exercises.cli import main

    assert main([]) == 0
    assert "softmax_forward + softmax_backward" in capsys.readouterr().out
    answers = tmp_path / "answers.py"
    source = Path(S.__file__).read_text(encoding="utf-8")
    answers.write_text(source, encoding="utf-8")
    assert main(["--check", str(answers)]) == 0
    assert capsys.readouterr().out.count(" pass ") == len(EXERCISES)
    answers.write_text(source.replace("return y * (dy - inner)", "return y * dy"),
                       encoding="utf-8")
    assert main(["--check", str(answers), "softmax"]) == 1
    out = capsys.readouterr().out
    assert "softmax        fail" in out and "missing the `- <dy, y>` term" in out
    assert main(["no_such_exercise"]) == 2
