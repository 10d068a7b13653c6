"""`npformer exercises`: list the exercises, or grade a file of answers and show the progress.

    npformer exercises                               the list, in the order of the course
    npformer exercises --check my_answers.py         a table: done / failing / not started
    npformer exercises --check my_answers.py softmax --verbose

The learner's file defines functions with the exercises' names (softmax_forward,
softmax_backward, ..., adamw_step: see npformer/exercises/__init__.py). It is graded
in a child process with a time limit and a memory limit (npformer/exercises/
sandbox.py): a file that loops, exits or crashes gets a one-line report, not a hung or
silently ended grader. Exit status 1 when an answered exercise fails or grading did not
finish; 2 when the file cannot be read or imported.
npformer/cli.py defines the command's options and calls `exercises_command`;
`python -m npformer.exercises` runs it on its own.
"""
import importlib.util
import sys
import traceback
from pathlib import Path

from . import EXERCISES

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


def exercises_command(args):
    from .sandbox import grade_file

    unknown = [n for n in args.names if n not in EXERCISES]
    if unknown:
        raise ExercisesError(f"unknown exercise(s) {', '.join(unknown)}; "
                             f"choose from {', '.join(EXERCISES)}")
    names = args.names or list(EXERCISES)
    if not args.check:
        for name in names:
            ex = EXERCISES[name]
            print(f"{name:14} {' + '.join(ex.functions):45} {ex.title}")
        print("\nStubs: notebooks/exercises_backward.ipynb and notebooks/exercises_llm.ipynb. "
              "Grade a file of answers: npformer exercises --check FILE")
        return 0
    if not Path(args.check).is_file():
        raise ExercisesError(f"--check {args.check}: no such file")
    outcome = grade_file(args.check, args.names, timeout=args.timeout,
                         memory_mb=args.memory_limit)
    if outcome.import_error:
        raise ExercisesError(outcome.import_error)
    if args.verbose:
        for name in names:
            report = outcome.results.get(name, {}).get("report")
            if report:
                print(report, end="\n\n")
    print(progress_table(outcome.results, names, outcome.problem))
    answered = [r for r in outcome.results.values() if r["status"] != "not answered"]
    if not answered and not outcome.problem:
        print(f"{args.check} defines none of the exercises' functions "
              f"(e.g. {EXERCISES[names[0]].functions[0]})")
    failed = any(r["status"] == "fail" for r in outcome.results.values())
    return 1 if failed or outcome.problem else 0


def main(argv=None):
    """`python -m npformer.exercises ARGS` is `npformer exercises ARGS`."""
    from ..cli import main as npformer_main

    return npformer_main(["exercises", *(sys.argv[1:] if argv is None else argv)])
