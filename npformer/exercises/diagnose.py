"""Find a mistake by the shape of the error, not by one spelling of it.

A catalogued hint (checker.Hint) recognises one wrong formula. The tests here
look at HOW a wrong output differs from the right one, whatever code produced it:

- mistakes as switches (`Mistakes`): the reference with parts switched off or
  replaced (AdamW without the bias correction of m, of v, or of both; layer norm
  without gamma in dx); every single switch and every pair is tried, so a
  partial or a combined mistake is named as precisely as a catalogued one (a
  switch that explains only some outputs leaves the others to the tests below);
- a constant factor: yours = c * right everywhere, c compared with the
  exercise's named factors (sqrt(D), alpha/r, 1/n, ...), with minus them (a flipped
  sign as well) and with -1;
- a transpose: yours = right^T (values) or a transposed shape;
- a missing, doubled or mis-scaled term: the right output is a sum of named
  terms (dx = dy W^T + s dy B^T A^T); yours - right is fitted by least squares
  with those terms (and with named wrong variants of them, such as W_v left
  untransposed); an exact fit says which term is missing, doubled, of the wrong
  sign, or replaced;
- a factor per feature or per row: yours = right * f(last index) (a per-feature
  scale such as gamma) or right * f(row) (a count per row, named by the exercise);
- a region: the error lives only where a named condition holds (padding
  positions, the last position, x <= 0, repeated tokens, ...);
- zero where it should not be: a gradient that receives nothing (a value
  passed off the tape, a path never added), or a value never computed.

Each message names the output it is about ("dk is sqrt(D) = 2 times ..."), so
the learner knows where to look. Shapes: any; outputs are compared as float64.
"""
from itertools import combinations
from typing import Callable, NamedTuple

import numpy as np

FIT_TOL = 1e-6  # relative residual under which a structural explanation counts as exact
COEF_TOL = 1e-4  # a fitted coefficient this close to -1, 0, 1, 2 ... is that number
MAX_MESSAGES = 3  # per failing answer: enough to guide, few enough to read


class Factor(NamedTuple):
    value: float  # yours / right
    text: str  # what the factor means, e.g. "the 1/sqrt(D) scale is missing"


class Term(NamedTuple):
    name: str  # e.g. "the LoRA path (alpha/r) dy B^T A^T"
    value: np.ndarray  # the term's value in the right answer
    variants: tuple = ()  # ((message, wrong value of the term), ...)


class Region(NamedTuple):
    name: str  # e.g. "the padding positions"
    mask: np.ndarray  # bool, broadcastable to the output


class Structure(NamedTuple):
    """What the exercise knows about one output: its named factors, terms and regions."""

    factors: tuple = ()  # of Factor
    terms: tuple = ()  # of Term (summing to the right output)
    regions: tuple = ()  # of Region
    features: tuple = ()  # ((name, vector over the last axis), ...) per-feature factors
    rows: tuple = ()  # ((name, vector over the rows), ...) per-row factors (a count per row)


class Mistakes(NamedTuple):
    """The reference with switches: simulate(case, **{flag: True}) -> {output: value}."""

    simulate: Callable
    flags: dict  # {flag: message naming the mistake}


# ----------------------------------------------------------------- small helpers
def _array(value):
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return a if np.isfinite(a).all() else None


def _close(a, b, tol=FIT_TOL):
    """a equals b up to a relative norm error of `tol` (0 when both are 0)."""
    den = np.linalg.norm(a) + np.linalg.norm(b)
    return den == 0 or np.linalg.norm(a - b) <= tol * den


def _nice(c):
    """A fitted coefficient as text: '2', '-1', '0.5' or '1.732'."""
    for v in (-2, -1, -0.5, 0, 0.5, 1, 2, 3):
        if abs(c - v) <= COEF_TOL * max(1.0, abs(v)):
            return f"{v:g}"
    return f"{c:.4g}"


# ----------------------------------------------------------------- switched mistakes
def explain_by_switches(mistakes, case, got, want):
    """(messages, outputs left over) of the fewest switches that reproduce the answer.

    A switch combination (one switch, else two) must reproduce every output it changes;
    the best leaves no other output wrong, else as few as possible (a second mistake
    elsewhere, which the caller diagnoses by its structure). ([], None) if none fits.
    """
    if mistakes is None:
        return [], None
    best = None  # (number of outputs left over, messages, those outputs)
    for size in (1, 2):
        for combo in combinations(list(mistakes.flags), size):
            try:
                wrong = mistakes.simulate(case, **{f: True for f in combo})
            except Exception:  # a switch that cannot apply to this case
                continue
            left = _left_over(got, want, wrong)
            if left is not None and (best is None or len(left) < best[0]):
                best = (len(left), [mistakes.flags[f] for f in combo], left)
        if best is not None and best[0] == 0:
            break
    return (best[1], best[2]) if best else ([], None)


def _left_over(got, want, wrong):
    """The outputs the switched reference does not explain, or None if it does not fit.

    It fits when it changes something and every output it changes equals the learner's.
    """
    changed, left = False, []
    for name, right in want.items():
        if name not in got:
            return None
        expected = wrong.get(name, right)
        if not _same(right, expected):  # the switch changes this output ...
            changed = True
            if not _same(got[name], expected):  # ... and the learner's is not that
                return None
        elif not _same(got[name], right):
            left.append(name)
    return left if changed else None


def _same(a, b):
    """Equal numbers (close, same shape; infinities in the same places), or equal objects."""
    try:
        x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError):  # lists of lists of different lengths, strings, ...
        try:
            return bool(a == b)
        except (TypeError, ValueError):
            return False
    if x.shape != y.shape or not np.array_equal(np.isfinite(x), np.isfinite(y)):
        return False
    finite = np.isfinite(x)
    return bool(np.all(x[~finite] == y[~finite])) and _close(x[finite], y[finite])


# ----------------------------------------------------------------- one output
def explain_output(name, got, want, structure=None, gradient=True):
    """One message about how output `name` differs from the right value, or None.

    gradient: is the output a gradient (else a value the forward computes)?
    """
    s = structure or Structure()
    g, w = _array(got), _array(want)
    if g is None or w is None:
        return None
    if g.shape != w.shape:
        if g.ndim >= 2 and g.shape == w.shape[:-2] + w.shape[-1:-3:-1]:
            return (f"{name} has the transposed shape {g.shape} (expected {w.shape}): "
                    f"a product taken in the wrong order, or a missing .T")
        return None
    if _close(g, w):
        return None
    if g.size < 2:  # one number: any factor or sum of terms fits it, proving nothing
        return None
    if not np.any(g) and np.any(w) and not gradient:
        return f"{name} is zero everywhere: is a term or a step of its computation missing?"
    if not np.any(g) and np.any(w):
        return (f"{name} is zero everywhere: no gradient reaches it. Is a path missing, or "
                f"did the value leave the computation (a copy, .data, a plain array)?")
    return (_transposed(name, g, w) or _factor(name, g, w, s.factors)
            or _terms(name, g, w, s.terms) or _per_axis(name, g, w, s.features, s.rows)
            or _region(name, g, w, s.regions))


def _transposed(name, g, w):
    if g.ndim >= 2 and g.shape[-1] == g.shape[-2] and _close(g, np.swapaxes(w, -1, -2)):
        return f"{name} is the transpose of the right value: swap the order of the product"
    return None


def _factor(name, g, w, factors):
    if not np.any(w):
        return None
    c = float((g * w).sum() / (w * w).sum())  # least-squares g ~ c w
    if not _close(g, c * w) or abs(c - 1) <= COEF_TOL:  # (c = 1: a rounding-size error)
        return None
    for f in factors:
        if abs(c - f.value) <= COEF_TOL * abs(f.value):
            return f"{name} is {c:.4g} times the right value everywhere: {f.text}"
    for f in factors:  # a named factor and a flipped sign: two mistakes, both named
        if abs(c + f.value) <= COEF_TOL * abs(f.value):
            return (f"{name} is {c:.4g} times the right value everywhere: the sign is "
                    f"flipped, and {f.text}")
    if abs(c + 1) <= COEF_TOL:
        return f"{name} has the wrong sign everywhere (-1 times the right value)"
    return (f"{name} is {c:.4g} times the right value everywhere: a scale factor is wrong or "
            f"missing (compare it with the factors of the forward pass)")


def _terms(name, g, w, terms):
    """Fit g - w with the terms and their wrong variants; name what an exact fit changes."""
    basis, labels = [], []
    for t in terms:
        for message, value in ((None, t.value),) + tuple(t.variants):
            v = _flat_like(value, g.shape)
            if v is not None and np.any(v) and not _in_span(basis, v):
                basis.append(v)
                labels.append((t.name, message))
    if not basis or len(basis) >= g.size:  # as many unknowns as numbers: a fit proves nothing
        return None
    M = np.stack(basis, axis=1)  # (size, n_basis)
    diff = (g - w).ravel()
    coef, *_ = np.linalg.lstsq(M, diff, rcond=None)
    if not _close(M @ coef, diff):
        return None
    replaced = {term for (term, message), c in zip(labels, coef)
                if message is not None and abs(c - 1) <= COEF_TOL}
    parts = []
    for (term, message), c in zip(labels, coef):
        if message is not None:
            if abs(c - 1) <= COEF_TOL:
                parts.append(message)
            continue
        if term in replaced and abs(c + 1) <= COEF_TOL:
            continue  # the term was replaced by its variant, said above
        if abs(c) <= COEF_TOL:
            continue
        if abs(c + 1) <= COEF_TOL:
            parts.append(f"the term {term} is missing")
        elif abs(c - 1) <= COEF_TOL:
            parts.append(f"the term {term} is counted twice")
        elif abs(c + 2) <= COEF_TOL:
            parts.append(f"the term {term} has the wrong sign")
        else:
            parts.append(f"the term {term} has factor {_nice(1 + c)} instead of 1")
    if not parts:
        return None
    return f"{name}: " + "; ".join(parts) + "."


def _in_span(basis, v):
    """Is v (up to rounding) a combination of the vectors already in `basis`?

    Then a fit could not tell it from them (a variant equal to its term in this case, say).
    """
    if not basis:
        return False
    M = np.stack(basis, axis=1)
    coef, *_ = np.linalg.lstsq(M, v, rcond=None)
    return _close(M @ coef, v)


def _flat_like(value, shape):
    """value broadcast to `shape` and flattened, or None if it does not fit."""
    v = _array(value)
    if v is None:
        return None
    try:
        return np.broadcast_to(v, shape).ravel()
    except ValueError:
        return None


def _per_axis(name, g, w, features, rows=()):
    """g = w * f(last index) with f not constant (per feature), or g = w * f(row).

    A named vector names the factor: over the last axis (features) when it equals f or
    1/f, over the rows (rows, a count per row) when it equals f.
    """
    if g.ndim == 0 or g.shape[-1] < 2:
        return None
    w2, g2 = w.reshape(-1, w.shape[-1]), g.reshape(-1, g.shape[-1])  # (rows, C)
    den = (w2 * w2).sum(axis=0)
    ok = den > 0
    f = np.where(ok, (g2 * w2).sum(axis=0) / np.where(ok, den, 1), 1.0)  # (C,)
    if g2.shape[0] >= 2 and _close(g2, w2 * f) and np.ptp(f[ok]) > COEF_TOL:
        for fname, vec in features:
            vec = np.asarray(vec, dtype=np.float64)
            if vec.shape == f.shape and (np.allclose(f, vec, rtol=COEF_TOL)
                                         or np.allclose(f * vec, 1, rtol=COEF_TOL)):
                how = "times" if np.allclose(f, vec, rtol=COEF_TOL) else "divided by"
                return (f"{name} is the right value {how} {fname}, feature by feature: "
                        f"{fname} is {'extra' if how == 'times' else 'missing'} there")
        return (f"{name} is right up to one factor per feature (last axis): a per-feature "
                f"scale is missing or extra")
    den = (w2 * w2).sum(axis=1)
    ok = den > 0
    r = np.where(ok, (g2 * w2).sum(axis=1) / np.where(ok, den, 1), 1.0)  # (rows,)
    if g2.shape[0] > 1 and _close(g2, w2 * r[:, None]) and np.ptp(r[ok]) > COEF_TOL:
        for rname, vec in rows:
            vec = np.asarray(vec, dtype=np.float64).ravel()
            if vec.shape == r.shape and np.allclose(r[ok], vec[ok], rtol=COEF_TOL):
                return f"{name}, row by row, is the right value times {rname}"
        return (f"{name} is right up to one factor per row (the last axis agrees up to "
                f"scale): a normalisation or a count differs from row to row")
    return None


def _region(name, g, w, regions):
    """The error is confined to a named region (and is not everywhere)."""
    err = np.abs(g - w)
    total = err.sum()
    for r in regions:
        mask = np.broadcast_to(np.asarray(r.mask, dtype=bool), g.shape)
        if mask.all() or not mask.any():
            continue
        if err[~mask].sum() <= FIT_TOL * total:
            if not np.any(g[mask]) and np.any(w[mask]):
                return f"{name} is zero at {r.name}, where it should not be"
            if not np.any(w[mask]):
                return f"{name} must be zero at {r.name}; yours is not"
            return f"{name} is wrong only at {r.name}; everywhere else it is right"
    return None


# ----------------------------------------------------------------- the whole answer
def diagnose(exercise, case, got, want, failed, fd_ok=None, switches=True):
    """[(about, message)] for a failing case: switched mistakes, else each wrong output.

    `about` is what the message is about (an output's name, "forward", or the switch's
    message itself), so that a caller can keep one message per output over several cases.
    failed: names of the outputs whose comparison failed, in the exercise's order.
    fd_ok: did the learner's backward agree with central differences of their forward?
    switches: try the switched mistakes first (they explain every output at once).
    """
    switched, left = explain_by_switches(exercise.mistakes, case, got, want) if switches \
        else ([], None)
    messages = [(text, text) for text in switched]
    if switched:
        failed = [name for name in failed if name in left]
    structure = exercise.structure(case, want) if exercise.structure else {}
    # the gradients (a block exercise has no wrt: its gradients are named d...)
    gradients = {g for _, g in exercise.wrt} or {n for n in want if n.startswith("d")}
    for name in failed:
        if name in got:
            text = explain_output(name, got[name], want[name], structure.get(name),
                                  gradient=name in gradients)
            if text:
                messages.append((name, text))
    forward = exercise.outputs[0]
    if forward in failed and fd_ok and not switched:
        messages.append(("forward", f"your backward agrees with your own forward (central "
                                    f"differences): the mistake is in the forward, {forward}; "
                                    f"the gradients follow it"))
    return messages[:MAX_MESSAGES]
