"""`npformer exercises`: list the exercises, or grade a file of answers.

    npformer exercises                               the list, with function names
    npformer exercises --check my_answers.py         grade every exercise the file answers
    npformer exercises --check my_answers.py softmax --verbose

The learner's file defines functions with the exercises' names (softmax_forward,
softmax_backward, ..., adamw_step: see npformer/exercises/__init__.py); it is
imported like any module of theirs. Exit status 1 when an answered exercise fails.
npformer/cli.py adds this command with `add_exercises_parser(subparsers)`;
`python -m npformer.exercises` runs it on its own.
"""
import argparse
import importlib.util
import sys
from pathlib import Path

from . import EXERCISES, check_functions


def add_exercises_parser(subparsers):
    """Add the `exercises` command to an argparse subparsers object."""
    p = subparsers.add_parser(
        "exercises", help="list the backward-pass exercises, or grade a file of your answers",
        description="List the exercises (write each backward pass yourself), or grade the "
                    "answers in a Python file of yours. Stubs: notebooks/exercises_backward.ipynb.")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="only these exercises (default: all)")
    p.add_argument("--check", metavar="FILE",
                   help="a Python file defining your answers (softmax_forward, softmax_backward, "
                        "...); grade every exercise it answers")
    p.add_argument("--verbose", action="store_true",
                   help="with --check: print the full report of each exercise, not one line")
    p.set_defaults(func=exercises_command)
    return p


def load_answers(path):
    """Import the learner's file as a module; its functions by name."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"npformer exercises: no file {path}")
    spec = importlib.util.spec_from_file_location("learner_answers", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    return vars(module)


def exercises_command(args):
    unknown = [n for n in args.names if n not in EXERCISES]
    if unknown:
        print(f"npformer exercises: unknown exercise(s) {', '.join(unknown)}; "
              f"choose from {', '.join(EXERCISES)}", file=sys.stderr)
        return 2
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
    parser = argparse.ArgumentParser(prog="npformer")
    add_exercises_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["exercises", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)
