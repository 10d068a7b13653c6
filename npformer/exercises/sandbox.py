"""Grade a learner's file in a child process, with a time limit and a memory limit.

Grading runs the learner's code: that is the design (it is their answer). This module
keeps the person who runs `npformer exercises --check FILE` safe from the ordinary
accidents of such code, not from malice:

- the file is imported and graded in a child process (`python -m
  npformer.exercises.sandbox`), so a `sys.exit(0)`, an `os._exit(3)` or a crash ends
  the child, not the grader, and is reported in one line;
- a wall-clock time limit for the whole file (a loop is stopped and named: "timed
  out after 120 s in exercise softmax"), counted from the moment the child has imported
  numpy and npformer (their start-up is not the learner's); the child runs in its own
  process group, and the group is killed;
- a memory limit (resource.setrlimit RLIMIT_AS where the platform has it): the child
  may grow by `memory_mb` beyond what it holds after importing numpy and npformer; an
  allocation past it raises MemoryError inside the learner's function, reported like
  any crash;
- the child's working directory is a fresh temporary directory, deleted afterwards, so
  relative paths in the file (a stray `os.remove("answers.py")`, files it writes) do not
  touch the user's folder; stdin is empty.
It is not a sandbox against a hostile file: the child has the user's rights (absolute
paths, the network, their other files). Grade files from others in a throwaway account
or container (docs/exercises.md says so).

The child reports through a file of JSON lines, one event per line, flushed at once,
so what it did before dying is known: "begin" when an exercise starts, "result" when
it ends, "done" at the very end. A missing "done" is a grading that did not finish.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

DEFAULT_TIMEOUT = 120.0  # seconds for the whole file; our model answers take a few
DEFAULT_MEMORY_MB = 2048  # MiB the child may add after its imports
STARTUP_LIMIT = 300.0  # seconds for the child to import numpy and npformer (not the learner's)
POLL = 0.1  # seconds between looks at the child


class Outcome(NamedTuple):
    """What grading a file gave: results by exercise, and a problem if it did not finish."""

    results: dict  # {exercise name: {"status", "n_passed", "n_cases", "hints", "notes", ...}}
    problem: str  # one line ("timed out after 5 s in exercise relu"), or "" when it finished
    import_error: str  # one line when the file could not be imported, else ""


# ----------------------------------------------------------------- the parent
def grade_file(path, names, timeout=DEFAULT_TIMEOUT, memory_mb=DEFAULT_MEMORY_MB):
    """Grade the exercises `names` (all if empty) answered in `path`, in a child process."""
    path = Path(path).resolve()
    root = str(Path(__file__).resolve().parents[2])  # the npformer this process runs
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
    with tempfile.TemporaryDirectory(prefix="npformer-grading-") as scratch:
        scratch = Path(scratch)
        events, stderr = scratch / "events.jsonl", scratch / "stderr.txt"
        work = scratch / "work"
        work.mkdir()
        command = [sys.executable, "-m", "npformer.exercises.sandbox", "--events", str(events),
                   "--memory-mb", str(memory_mb), str(path), *names]
        with open(stderr, "w", encoding="utf-8", errors="replace") as err:
            child = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                     stderr=err, start_new_session=True)
            try:
                code, timed_out = _wait(child, events, timeout)
            except BaseException:  # Ctrl-C in the parent: do not leave the child running
                _kill(child)
                raise
        records = _read_events(events)
        tail = _last_line(stderr)
        if any(r["event"] == "done" for r in records):
            _replay(stderr)  # warnings the learner's code printed stay visible
    results = {r["exercise"]: r for r in records if r["event"] == "result"}
    import_error = next((r["message"] for r in records if r["event"] == "import_error"), "")
    problem = "" if any(r["event"] == "done" for r in records) else _problem(
        records, timed_out, timeout, code, tail, path)
    return Outcome(results, problem, import_error)


def _wait(child, events, timeout):
    """Wait for the child; kill it `timeout` s after it started grading. (exit code, timed out)

    The clock starts at the child's "start" event, once numpy and npformer are imported:
    on a busy machine the imports alone can take seconds, and they are not the learner's.
    """
    started = None
    born = time.monotonic()
    while True:
        try:
            return child.wait(timeout=POLL), False
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if started is None and events.exists() and events.stat().st_size > 0:
            started = now  # the first event is "start"
        if (started is not None and now - started > timeout) or (
                started is None and now - born > STARTUP_LIMIT):
            return _kill(child), True


def _kill(child):
    """End the child and everything it started (its process group); its exit code."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(child.pid, signal.SIGKILL)
        else:  # Windows: no process groups in this sense
            child.kill()
    except (ProcessLookupError, PermissionError):
        pass
    return child.wait()


def _read_events(path):
    records = []
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by the kill
                continue
    return records


def _last_line(path):
    lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace")
             .splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _replay(path):
    text = path.read_text(encoding="utf-8", errors="replace")
    if text:
        sys.stderr.write(text)


def _problem(records, timed_out, timeout, code, tail, path):
    """One line: what stopped the grading, and where."""
    started = [r["exercise"] for r in records if r["event"] == "begin"]
    finished = {r["exercise"] for r in records if r["event"] == "result"}
    running = [n for n in started if n not in finished]
    if not any(r["event"] == "imported" for r in records):
        where = f"while importing {path.name}"
    elif running:
        where = f"in exercise {running[-1]}"
    else:
        where = "between exercises"
    if timed_out and not records:
        return f"the grading process did not start within {STARTUP_LIMIT:g} s"
    if timed_out:
        return (f"timed out after {timeout:g} s {where} (an endless loop? the limit is "
                f"--timeout)")
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"grading crashed {where}: the child process was killed by {name}"
    said = f" ({tail})" if tail and not tail.startswith("Traceback") else ""
    return f"your file exited during grading (code {code}) {where}{said}"


# ----------------------------------------------------------------- the child
def set_memory_limit(memory_mb):
    """Cap the address space at its current size + memory_mb MiB; the MiB set, or None."""
    if memory_mb <= 0:
        return None
    try:
        import resource

        with open("/proc/self/statm", encoding="ascii") as f:  # size in pages (Linux)
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = current + memory_mb * 2**20
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError, AttributeError):  # not Linux, or not allowed
        return None
    return memory_mb


def child_main(argv=None):
    """`python -m npformer.exercises.sandbox --events PATH [--memory-mb N] FILE [NAME ...]`."""
    parser = argparse.ArgumentParser(prog="python -m npformer.exercises.sandbox")
    parser.add_argument("--events", required=True)
    parser.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB)
    parser.add_argument("file")
    parser.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    import numpy  # noqa: F401  (imported before the memory limit is set)

    from . import EXERCISES, check
    from .answers import ExercisesError, load_answers, pick_functions

    with open(args.events, "a", encoding="utf-8") as out:
        def emit(**record):
            out.write(json.dumps(record) + "\n")
            out.flush()

        emit(event="start", memory_limit_mb=set_memory_limit(args.memory_mb))
        try:
            namespace = load_answers(args.file)
        except ExercisesError as err:
            emit(event="import_error", message=str(err))
            emit(event="done")
            return 0
        emit(event="imported")
        for name in args.names or list(EXERCISES):
            functions = pick_functions(namespace, EXERCISES[name])
            if not any(functions.values()):
                emit(event="result", exercise=name, status="not answered", n_passed=0,
                     n_cases=0, hints=[], notes=[], report="", blocked_by=[])
                continue
            emit(event="begin", exercise=name)
            try:
                result = check(name, verbose=False, **functions)
            except Exception as err:  # a failure of the grader itself, or of code it ran
                emit(event="result", exercise=name, status="fail", n_passed=0, n_cases=0,
                     hints=[], notes=[], error=f"grading stopped: {type(err).__name__}: {err}",
                     report=f"{name}: grading stopped: {type(err).__name__}: {err}",
                     blocked_by=[])
                continue
            emit(event="result", exercise=name, status=result.status, n_passed=result.n_passed,
                 n_cases=len(result.cases), hints=result.hints, notes=result.notes,
                 error=result.first_error, report=result.report(),
                 blocked_by=result.blocked_by)
        emit(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
