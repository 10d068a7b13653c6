"""The learner's answers: import their file, find each exercise's functions, tabulate progress."""
import importlib.util
import sys
import traceback
from pathlib import Path

PROGRESS = {  # CheckResult.status -> what the progress table says
    "pass": "done", "fail": "failing", "incomplete": "in progress",
    "not implemented": "not started", "not answered": "not started",
}


class ExercisesError(ValueError):
    """A problem with the learner's file or the names asked for: one line, exit code 2."""


def load_answers(path):
    """Import the learner's file as a module; its functions by name."""
    path = Path(path)
    if not path.is_file():
        raise ExercisesError(f"--check {path}: no such file")
    spec = importlib.util.spec_from_file_location("learner_answers", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the learner's own code failed: say where, in one line
        line = getattr(err, "lineno", None)
        if line is None:
            frames = [f for f in traceback.extract_tb(err.__traceback__)
                      if Path(f.filename).resolve() == path.resolve()]
            line = frames[-1].lineno if frames else "?"
        raise ExercisesError(f"--check {path}: importing it failed at line {line}: "
                             f"{type(err).__name__}: {err}") from None
    finally:
        sys.path.pop(0)
    return vars(module)


def pick_functions(namespace, exercise):
    """{role: the learner's function or None} for one exercise, found by name."""
    return {role: namespace.get(fn) if callable(namespace.get(fn)) else None
            for role, fn in zip(exercise.roles, exercise.functions)}


def progress_table(results, names, problem=""):
    """The progress view: one line per exercise (done / failing / in progress / not started).

    results: {name: {"status", "n_passed", "n_cases", "hints", "notes", "blocked_by"}};
    an exercise without a result was not graded (grading stopped first).
    """
    lines = [f"{'exercise':14} {'status':12} {'cases':6} note", "-" * 72]
    counts = {}
    for name in names:
        r = results.get(name)
        status = PROGRESS.get(r["status"], r["status"]) if r else "not graded"
        counts[status] = counts.get(status, 0) + 1
        cases = f"{r['n_passed']}/{r['n_cases']}" if r and r["n_cases"] else ""
        note = ""
        if r and r["status"] == "fail":
            note = ("HINT: " + r["hints"][0] if r["hints"] else r.get("error")
                    or (r["notes"] or [""])[0])
        elif r and r["status"] == "incomplete":
            note = (r["notes"] or [""])[0]
        lines.append(f"{name:14} {status:12} {cases:6} {note}".rstrip())
    order = ("done", "failing", "in progress", "not started", "not graded")
    lines.append("-" * 72)
    lines.append(", ".join(f"{counts[s]} {s}" for s in order if s in counts)
                 + f" (of {len(names)})")
    if problem:
        lines.append(f"grading stopped: {problem}")
    return "\n".join(lines)
