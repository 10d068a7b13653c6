"""`npformer exercises`: list the exercises, or grade a file of answers.

    npformer exercises                               the list, with function names
    npformer exercises --check my_answers.py         grade every exercise the file answers
    npformer exercises --check my_answers.py softmax --verbose

The learner's file defines functions with the exercises' names (softmax_forward,
softmax_backward, ..., adamw_step: see npformer/exercises/__init__.py); it is
imported like any module of theirs. Exit status 1 when an answered exercise fails.
npformer/cli.py defines the command's options and calls `exercises_command`;
`python -m npformer.exercises` runs it on its own.
"""
import importlib.util
import sys
import traceback
from pathlib import Path

from . import EXERCISES, check_functions


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


def exercises_command(args):
    unknown = [n for n in args.names if n not in EXERCISES]
    if unknown:
        raise ExercisesError(f"unknown exercise(s) {', '.join(unknown)}; "
                             f"choose from {', '.join(EXERCISES)}")
    names = args.names or list(EXERCISES)
    if not args.check:
        for name in names:
            ex = EXERCISES[name]
            print(f"{name:14} {' + '.join(ex.functions):45} {ex.title}")
        print("\nStubs: notebooks/exercises_backward.ipynb. Grade a file of answers: "
              "npformer exercises --check FILE")
        return 0
    results = check_functions(load_answers(args.check), names, verbose=args.verbose)
    for name in names:
        result = results.get(name)
        status = "not answered" if result is None else result.status
        cases = "" if result is None else f"{result.n_passed}/{len(result.cases)} cases"
        print(f"{name:14} {status:16} {cases}")
        if result is not None and not args.verbose and result.hints:
            print(f"{'':14} HINT: {result.hints[0]}")
    if not results:
        print(f"{args.check} defines none of the exercises' functions "
              f"(e.g. {EXERCISES[names[0]].functions[0]})")
    return 1 if any(r.status == "fail" for r in results.values()) else 0


def main(argv=None):
    """`python -m npformer.exercises ARGS` is `npformer exercises ARGS`."""
    from ..cli import main as npformer_main

    return npformer_main(["exercises", *(sys.argv[1:] if argv is None else argv)])
