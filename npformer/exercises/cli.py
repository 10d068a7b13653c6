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
npformer/cli/__init__.py defines the command's options and calls `exercises_command`;
`python -m npformer.exercises` runs it on its own (__main__.py).
"""
from pathlib import Path

from .answers import ExercisesError, progress_table
from .catalog import EXERCISES


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
