"""The grader behind `npformer.exercises.check`.

For every case of an exercise (random float64 inputs of a few shapes, with masks,
padding and odd sizes) the learner's functions are run and compared with:

1. the reference: the forward output and every gradient, entry by entry;
2. central differences of the learner's OWN forward (a random upstream gradient
   `dout`, the scalar `L = sum(out * dout)`, `(L(x + eps) - L(x - eps)) / 2 eps`
   on a few entries of each input), so a backward is also checked against the
   forward it belongs to.

A failing case reports the largest error and where it is. Each exercise carries
hints: tests for the common wrong answers (the softmax backward without the
`- <dy, y>` term, a forgotten 1/sqrt(D), ...); every hint whose test matches is
printed under the report. When none matches, npformer/exercises/diagnose.py
looks at the structure of the error (a missing factor or term, a transpose, a
region) and names the output and the likely mistake. When the exercise fails and
the learner's functions call their own answers to another exercise (attention
calling softmax_backward), that exercise is graded first, and if it fails the
report says so: fix softmax before attention. A function that raises
NotImplementedError (itself, or a function of theirs it calls) is reported as
"not implemented yet", never as a traceback.
"""
import traceback
from typing import Callable, NamedTuple

import numpy as np

from .deps import blocking_message, dependencies
from .diagnose import diagnose

REF_TOL = 1e-7  # relative error allowed against the reference (two exact formulas, float64)
FD_TOL = 1e-6  # relative error allowed against central differences (float64, FD_EPS)
FD_EPS = 1e-6  # finite-difference step
FD_ENTRIES = 12  # entries per input tensor checked by finite differences
ABS_TOL = 1e-10  # both sides below this everywhere: equal (zero in theory, rounding in practice)
MATCH_TOL = 1e-6  # a hint's wrong formula "matches" the learner's answer within this


class Case(NamedTuple):
    label: str  # what makes this case special, e.g. "padding mask (2,1,5)"
    inputs: dict  # the learner's forward arguments by name, in signature order
    dout: object  # random upstream gradient for the backward (array or float)


class Hint(NamedTuple):
    message: str  # names the likely mistake and how to fix it
    test: Callable  # test(case, got, want) -> True when the answer shows the mistake


class Line(NamedTuple):
    what: str  # "forward", "dx", "finite differences", ...
    ok: bool
    detail: str  # empty when ok


class CaseResult(NamedTuple):
    number: int
    label: str
    lines: list  # of Line

    @property
    def passed(self):
        return all(line.ok for line in self.lines)


class NotImplementedYet(Exception):
    """The learner's function (or a function of theirs it calls) raises NotImplementedError."""

    def __init__(self, role, callee=None):
        super().__init__(role)
        self.role, self.callee = role, callee  # callee: the function that raised, if another


class LearnerError(Exception):
    """The learner's function raised; the message says which and why, briefly."""


class CheckResult:
    """What `check` found: truthy only when every case passes.

    status: "pass", "fail", "incomplete" (a function is missing or not written
    yet, the rest was checked) or "not implemented" (nothing written yet).
    """

    def __init__(self, name, title, status, cases=(), hints=(), notes=(), blocked_by=()):
        self.name, self.title, self.status = name, title, status
        self.cases, self.hints, self.notes = list(cases), list(hints), list(notes)
        self.blocked_by = list(blocked_by)  # exercises of the learner's that fail and that this calls

    def __bool__(self):
        return self.status == "pass"

    @property
    def n_passed(self):
        return sum(case.passed for case in self.cases)

    @property
    def first_error(self):
        """The first crash of the learner's code, in one line ("" if none)."""
        return next((line.detail for case in self.cases for line in case.lines
                     if line.what == "error"), "")

    def __repr__(self):
        return (f"<CheckResult {self.name}: {self.status}, "
                f"{self.n_passed}/{len(self.cases)} cases pass>")

    def report(self):
        """The learner-facing text: one line per case, details of failures, hints."""
        if self.status == "not implemented":
            return f"{self.name}: not implemented yet. " + " ".join(self.notes)
        out = [f"{self.name}: {self.title}"]
        for case in self.cases:
            mark = "PASS" if case.passed else "FAIL"
            checked = ", ".join(line.what for line in case.lines)
            out.append(f"  {mark}  case {case.number}: {case.label}  [{checked}]")
            failed = [line for line in case.lines if not line.ok]
            if len(failed) > 1:  # finite differences only repeat what the reference found
                failed = [line for line in failed if line.what != "finite differences"]
            out += [f"          {line.what}: {line.detail}" for line in failed]
        out += [f"  note: {note}" for note in self.notes]
        out += [f"  HINT: {hint}" for hint in self.hints]
        verdict = {"pass": "all cases pass", "fail": "some cases fail",
                   "incomplete": "not finished"}[self.status]
        out.append(f"{self.name}: {self.n_passed} of {len(self.cases)} cases pass ({verdict}).")
        return "\n".join(out)


# ----------------------------------------------------------------- comparing arrays
def rel_error(a, b):
    """Norm-wise relative error ||a - b|| / (||a|| + ||b||); 0 when both are zero."""
    den = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / den) if den > 0 else 0.0


def as_float_array(value):
    """The value as a float64 array, or None if it is not numeric."""
    if value is None:
        return None
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def compare(what, got, want, tol=REF_TOL):
    """One Line: does `got` equal `want` up to `tol`? On failure say where and by how much."""
    want = np.asarray(want, dtype=np.float64)
    got_array = as_float_array(got)
    if got_array is None:
        return Line(what, False, f"returned {type(got).__name__}, expected an array "
                                 f"of shape {want.shape}")
    if got_array.shape != want.shape:
        return Line(what, False, f"has shape {got_array.shape}, expected {want.shape}")
    bad = ~np.isfinite(got_array) & np.isfinite(want)
    if bad.any():
        where = [int(i) for i in np.argwhere(bad)[0]]
        return Line(what, False, f"contains {got_array[tuple(where)]} at {where} "
                                 f"({int(bad.sum())} non-finite entries)")
    diff = np.abs(np.where(np.isfinite(want), got_array - want, 0.0))
    if diff.size == 0 or diff.max() <= ABS_TOL:
        return Line(what, True, "")
    rel = rel_error(np.nan_to_num(got_array), np.nan_to_num(want))
    if rel <= tol:
        return Line(what, True, "")
    where = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return Line(what, False, f"largest error {diff[where]:.2e} at {[int(i) for i in where]} "
                             f"(yours {got_array[where]:.6g}, expected {want[where]:.6g}); "
                             f"relative error {rel:.1e}")


def matches(got, wrong):
    """True when the learner's answer equals a known wrong formula (same shape, close)."""
    got, wrong = as_float_array(got), as_float_array(wrong)
    if got is None or wrong is None or got.shape != wrong.shape:
        return False
    if not (np.isfinite(got).all() and np.isfinite(wrong).all()):
        return False
    return rel_error(got, wrong) <= MATCH_TOL


# ----------------------------------------------------------------- calling the learner
def call(function, role, *args):
    """Run one learner function; turn NotImplementedError and crashes into our exceptions."""
    try:
        return function(*args)
    except NotImplementedError as err:
        frames = traceback.extract_tb(err.__traceback__)
        raiser = frames[-1].name if len(frames) > 1 else None
        own = getattr(function, "__name__", None)
        callee = raiser if raiser not in (own, "<lambda>", None) else None
        raise NotImplementedYet(role, callee) from None
    except Exception as err:  # the learner's bug: report it in one line, not a traceback
        frame = traceback.extract_tb(err.__traceback__)[-1]
        where = f"line {frame.lineno}" + (f": {frame.line}" if frame.line else "")
        raise LearnerError(f"{role} raised {type(err).__name__}: {err} ({where})") from None


def copy_inputs(inputs):
    """Fresh copies, so a learner function that writes into its inputs harms nothing."""
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in inputs.items()}


def numerical_entries(forward, inputs, name, dout, entries):
    """Central differences of L = sum(forward(...)[0] * dout) w.r.t. inputs[name].flat[entries]."""
    grads = []
    for i in entries:
        values = []
        for sign in (1.0, -1.0):
            shifted = copy_inputs(inputs)
            shifted[name].flat[i] += sign * FD_EPS
            out = as_float_array(forward(*shifted.values())[0])
            values.append(float((out * dout).sum()))
        grads.append((values[0] - values[1]) / (2 * FD_EPS))
    return np.array(grads)


def finite_difference_line(forward, case, wrt, grads, rng, allowed=None):
    """Compare the learner's gradients with central differences of the learner's forward.

    `allowed(case, name)`, if given, is a boolean mask of the entries that may be nudged
    (the padding row of an embedding gets a zero gradient by convention, not by calculus).
    """
    worst = 0.0
    for name, grad_name in wrt:
        x = case.inputs[name]
        got = as_float_array(grads.get(grad_name))
        if got is None or got.shape != x.shape:
            return Line("finite differences", False, f"{grad_name} does not have the shape "
                                                     f"of {name} {x.shape}")
        pool = np.flatnonzero(allowed(case, name)) if allowed else np.arange(x.size)
        entries = rng.choice(pool, size=min(FD_ENTRIES, pool.size), replace=False)
        try:
            numeric = numerical_entries(forward, case.inputs, name, case.dout, entries)
        except Exception:  # the forward crashed on a nudged input: the forward lines say why
            return Line("finite differences", False, "your forward failed on a nudged input")
        analytic = got.flat[entries]
        if max(np.abs(analytic).max(), np.abs(numeric).max()) <= ABS_TOL:
            continue
        rel = rel_error(analytic, numeric)
        worst = max(worst, rel)
        if not rel <= FD_TOL:
            k = int(np.argmax(np.abs(analytic - numeric)))
            where = [int(i) for i in np.unravel_index(int(entries[k]), x.shape)]
            return Line("finite differences", False,
                        f"{grad_name} at {where} is {analytic[k]:.6g}, but nudging {name} there "
                        f"changes the loss at rate {numeric[k]:.6g} (relative error {rel:.1e}); "
                        f"your backward does not match your forward")
    return Line("finite differences", True, "")


# ----------------------------------------------------------------- exercises and the run
class Exercise(NamedTuple):
    name: str  # what check() is called with: "softmax"
    title: str  # one line for the report
    roles: tuple  # the keywords check() takes: ("forward", "backward") or ("step",)
    functions: tuple  # the learner's function names for those roles, same order
    outputs: tuple  # names of what is compared: ("y", "dx") ...; forward output first
    make_cases: Callable  # make_cases(rng) -> list of Case
    reference: Callable  # reference(case) -> {output name: expected value}
    hints: tuple  # of Hint
    page: str  # the derivation to re-read, e.g. "docs/derivations/softmax.md"
    wrt: tuple = ()  # ((input name, gradient name), ...) checked by finite differences
    learner_outputs: Callable = None  # (exercise, functions, case, got) fills got; None: layer
    fd_allowed: Callable = None  # fd_allowed(case, input name) -> bool mask of entries to nudge
    answer_based: bool = False  # reference(case, got): the right answer depends on the learner's
    #                             (dropout: the right output for the learner's own random mask)
    comparators: dict = None  # {output name: compare-like function(what, got, want, case)}
    mistakes: object = None  # diagnose.Mistakes: the reference with switchable mistakes
    structure: Callable = None  # structure(case, want) -> {output: diagnose.Structure}
    fd_when: Callable = None  # fd_when(case) -> False: no finite differences (a large case)


def layer_outputs(exercise, functions, case, got):
    """Run forward, then backward with the case's dout; put what they return into `got`."""
    out = call(functions["forward"], "forward", *copy_inputs(case.inputs).values())
    if not (isinstance(out, tuple) and len(out) == 2):
        raise LearnerError("forward must return a pair (output, cache)")
    got[exercise.outputs[0]] = out[0]
    if functions.get("backward") is None:
        return
    dout = case.dout.copy() if isinstance(case.dout, np.ndarray) else case.dout
    grads = call(functions["backward"], "backward", dout, out[1])
    names = exercise.outputs[1:]
    if len(names) == 1 and not isinstance(grads, (tuple, list)):
        grads = (grads,)
    if not isinstance(grads, (tuple, list)) or len(grads) != len(names):
        raise LearnerError(f"backward must return {len(names)} gradient(s): {', '.join(names)}")
    got.update(zip(names, grads))


def run(exercise, functions, seed=0, registry=None, _chain=()):
    """Grade `functions` ({role: function}) on every case of `exercise`: a CheckResult.

    registry: {name: Exercise}, to find the learner's answers to other exercises
    that these functions call (graded first when this one fails).
    """
    rng = np.random.default_rng(seed)
    outputs_of = exercise.learner_outputs or layer_outputs
    results, hints, not_yet, crashed, failures = [], [], {}, [], []
    for number, case in enumerate(exercise.make_cases(rng), start=1):
        want = None if exercise.answer_based else exercise.reference(case)
        got, lines = {}, []
        try:
            outputs_of(exercise, functions, case, got)
        except NotImplementedYet as err:
            not_yet.setdefault(err.role, err.callee)
        except LearnerError as err:
            lines.append(Line("error", False, str(err)))
            crashed.append(str(err))
        if want is None:
            want = exercise.reference(case, got)
        lines = [_compare_output(exercise, name, got[name], want[name], case)
                 for name in exercise.outputs if name in got] + lines
        forward_ok = bool(lines) and lines[0].ok and exercise.outputs[0] in got
        fd_ok = None
        use_fd = exercise.wrt and (exercise.fd_when is None or exercise.fd_when(case))
        if use_fd and forward_ok and all(g in got for _, g in exercise.wrt):
            fd_line = finite_difference_line(functions["forward"], case, exercise.wrt, got,
                                             rng, exercise.fd_allowed)
            lines.append(fd_line)
            fd_ok = fd_line.ok
        elif use_fd and lines and not lines[0].ok and functions.get("backward"):
            fd_ok = _backward_follows_forward(functions, case, exercise, got, rng)
        if lines:
            results.append(CaseResult(number, case.label, lines))
        if lines and not all(line.ok for line in lines):
            failed = [line.what for line in lines if not line.ok and line.what in want]
            fired = [hint for hint in exercise.hints if _shows(hint, case, got, want)]
            hints += [hint.message for hint in fired if hint.message not in hints]
            # outputs no fired hint is about (it still fires with that output put right):
            # a second, combined mistake, diagnosed by its structure below
            unexplained = [name for name in failed if not fired or all(
                _shows(hint, case, {**got, name: want[name]}, want) for hint in fired)]
            failures.append((case, got, want, failed, fd_ok, unexplained, bool(fired)))

    missing = [role for role in exercise.roles if functions.get(role) is None]
    todo = sorted(not_yet) + missing  # roles that were not checked
    names = dict(zip(exercise.roles, exercise.functions))
    if not results:
        callees = [c for c in not_yet.values() if c]
        if callees:
            notes = [f"{names[r]} calls {c}, which is not implemented yet: write {c} first."
                     for r, c in sorted(not_yet.items()) if c]
        else:
            todo_names = [names[r] for r in exercise.roles]
            raises = "they raise" if len(todo_names) > 1 else "it raises"
            notes = [f"Fill in {' and '.join(todo_names)} ({raises} "
                     f"NotImplementedError), then run the check again."]
        return CheckResult(exercise.name, exercise.title, "not implemented", notes=notes)
    notes = [f"{names[role]}: not implemented yet" if callee is None else
             f"{names[role]} calls {callee}, which is not implemented yet"
             for role, callee in sorted(not_yet.items())]
    notes += [f"{names[role]}: not given, not checked" for role in missing]
    failed = not all(case.passed for case in results)
    blocked_by = []
    if failed and registry:
        blocked_by, message = _failing_dependencies(exercise, functions, seed, registry, _chain)
        if message:
            if hints:
                notes.append("the hints of this exercise are left out until that is fixed")
            hints = [message]
    if failed:
        hints += [message for message in _structural_hints(exercise, failures)
                  if message not in hints]
    only_crashes = all(line.what == "error" for case in results for line in case.lines
                       if not line.ok)
    if failed and not hints and not only_crashes:
        notes.append(f"no hint matches this mistake: re-derive it step by step with "
                     f"{exercise.page}; the largest error above shows where to look")
    status = "fail" if failed else ("incomplete" if todo else "pass")
    return CheckResult(exercise.name, exercise.title, status, results, hints, notes, blocked_by)


def _structural_hints(exercise, failures):
    """Hints from the structure of the errors (diagnose.py), one per output, at most 3.

    In a case where catalogued hints fired, only for the outputs none of them is about (a
    second mistake); in a case where none fired (a mistake that shows only there, or
    only with another one), the whole diagnosis: switched mistakes, then structure.
    """
    hints, about = [], set()  # one message per output: the first failing case that explains it
    forward = exercise.outputs[0]
    for case, got, want, failed, fd_ok, unexplained, fired in failures:
        outputs = unexplained
        if fired and forward in failed and fd_ok is not False:
            outputs = [name for name in outputs if name == forward]  # gradients follow it
        if not outputs:
            continue
        for subject, message in diagnose(exercise, case, got, want, outputs, fd_ok,
                                         switches=not fired):
            if subject not in about and message not in hints:
                about.add(subject)
                hints.append(message)
        if len(hints) >= 3:
            break
    return hints[:3]


def _compare_output(exercise, name, got, want, case):
    """The exercise's comparator for this output (compare() by default), never raising."""
    comparator = (exercise.comparators or {}).get(name)
    if comparator is None:
        return compare(name, got, want)
    try:
        return comparator(name, got, want, case)
    except Exception:  # a value of a kind the comparator cannot read: say what it was
        return Line(name, False, f"returned {type(got).__name__}, which cannot be compared "
                                 f"with the expected {type(want).__name__}")


def _backward_follows_forward(functions, case, exercise, got, rng):
    """With a wrong forward: does the learner's backward match their own forward anyway?"""
    if not all(g in got for _, g in exercise.wrt):
        return None
    try:
        return finite_difference_line(functions["forward"], case, exercise.wrt, got, rng,
                                      exercise.fd_allowed).ok
    except Exception:  # the learner's forward fails on a nudged input: no verdict
        return None


def _failing_dependencies(exercise, functions, seed, registry, chain):
    """Grade the learner's answers that these functions call; (names, message) if one fails."""
    failing = []
    for other, roles in dependencies(exercise, functions, registry):
        if other.name in chain:
            continue  # a cycle (a calls b calls a): graded once is enough
        result = run(other, roles, seed, registry, chain + (exercise.name,))
        if result.status == "fail":
            failing.append((other, roles, result))
    if not failing:
        return [], None
    return [o.name for o, _, _ in failing], blocking_message(exercise, functions, failing)


def _shows(hint, case, got, want):
    """Does the answer show the hint's mistake?

    A test that cannot tell says no, and so does a test that the right answer
    would pass too (no repeated token: no scatter hint).
    """
    try:
        return bool(hint.test(case, got, want)) and not hint.test(case, dict(want), want)
    except Exception:
        return False
