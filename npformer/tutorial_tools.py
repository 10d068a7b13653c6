"""Keep the stored notebooks true to the code (a developer tool, not used at run time).

    python -m npformer.tutorial_tools regen [NAME ...]   re-execute and save, in place
    python -m npformer.tutorial_tools check [NAME ...]   execute a copy; report drift and
                                                         prose numbers; exit 1 on a problem

NAME is a notebook's file name or its number ("08"); no NAME means every notebook, in
the order of the learning path in docs/index.md (then any notebook it does not list).
Both need the test extra (nbclient, ipykernel) and a checkout of the repository.

Two checks, also run by tests/test_notebooks.py:

* drift: the stored text outputs (stdout/stderr streams, text/plain results, errors)
  must equal those of a fresh execution. A code cell tagged "nondeterministic" or
  "timing" (cell metadata "tags") is left out; in a cell tagged "numbers-vary" every
  number is replaced by "<n>" before comparing.
* prose numbers: a number quoted in a markdown cell (one with a decimal point, a
  percentage, or three or more digits, outside $math$, code and links) must appear in
  some code cell's output or in an `assert` line of a code cell. Numbers that are
  facts, not results ("2017"), go in the markdown cell's metadata
  `"prose_numbers_ok": ["2017"]`.
"""
import copy
import difflib
import math
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
LEARNING_PATH = ROOT / "docs" / "index.md"
CELL_TIMEOUT = 300  # seconds for any single cell
SKIP_TAGS = {"nondeterministic", "timing"}  # outputs not compared
NUMBERS_VARY_TAG = "numbers-vary"  # outputs compared with every number replaced by <n>
ALLOW_KEY = "prose_numbers_ok"  # markdown cell metadata: numbers the prose may quote freely
# Lines the kernel itself prints on stderr on some machines; never part of a result.
KERNEL_NOISE = re.compile(r"^\[IPKernelApp\].*$\n?", re.MULTILINE)

NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?%?")
# Where prose numbers are not claims about results: $$math$$, $math$, `code`, link targets,
# HTML tags.
NOT_PROSE = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$|`[^`]*`|\]\([^)]*\)|<[^>]+>", re.DOTALL)


# ----------------------------------------------------------------- which notebooks, in order
def learning_path():
    """All notebooks: first those the learning path of docs/index.md links, in its order."""
    existing = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    text = LEARNING_PATH.read_text(encoding="utf-8") if LEARNING_PATH.exists() else ""
    ordered = []
    for link in re.findall(r"notebooks/([\w*]+)\.ipynb", text):
        prefix = link.split("*")[0]
        for path in existing:
            if path.stem.startswith(prefix) and path not in ordered:
                ordered.append(path)
                break
    return ordered + [p for p in existing if p not in ordered]


def select(names):
    """Notebooks matching the names ("08", "08_training", "08_training.ipynb"), in order."""
    paths = learning_path()
    if not names:
        return paths
    chosen = [p for p in paths if any(p.name == n or p.stem == n or p.stem.startswith(n + "_")
                                      for n in names)]
    unknown = [n for n in names if not any(p.name == n or p.stem == n or p.stem.startswith(n + "_")
                                           for p in paths)]
    if unknown:
        raise SystemExit(f"no notebook named {', '.join(unknown)}; "
                         f"there are: {', '.join(p.name for p in paths)}")
    return chosen


# ----------------------------------------------------------------- executing
def execute(nb, cwd, timeout=CELL_TIMEOUT):
    """Run every cell of `nb` (an nbformat notebook) in a fresh kernel, in place."""
    import nbclient

    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     record_timing=False, resources={"metadata": {"path": str(cwd)}})
    client.execute()
    strip_kernel_noise(nb)
    return nb


def strip_kernel_noise(nb):
    """Drop the kernel's own stderr chatter from stream outputs (and streams left empty)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                out["text"] = KERNEL_NOISE.sub("", out["text"])
                if not out["text"]:
                    continue
            kept.append(out)
        cell["outputs"] = kept


# ----------------------------------------------------------------- drift
def cell_text(cell):
    """The text outputs of one code cell as one string, in the order they appeared."""
    parts = []
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream":
            parts.append(KERNEL_NOISE.sub("", _joined(out.get("text", ""))))
        elif kind in ("execute_result", "display_data"):
            text = out.get("data", {}).get("text/plain")
            if text is not None and kind == "execute_result":  # a figure's repr is no result
                parts.append(_joined(text) + "\n")
        elif kind == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}\n")
    return "".join(parts)


def _joined(text):
    return "".join(text) if isinstance(text, list) else text


def compared_text(cell):
    """cell_text as compared for drift: None for a skipped cell, numbers masked if tagged."""
    tags = set(cell.get("metadata", {}).get("tags", []))
    if tags & SKIP_TAGS:
        return None
    text = cell_text(cell)
    if NUMBERS_VARY_TAG in tags:
        text = NUMBER.sub("<n>", text)
    return text


def drift(stored, fresh, name="notebook"):
    """Readable differences between the stored and the fresh text outputs, one per cell."""
    problems = []
    if len(stored.cells) != len(fresh.cells):
        return [f"{name}: {len(stored.cells)} cells stored, {len(fresh.cells)} executed"]
    for index, (old, new) in enumerate(zip(stored.cells, fresh.cells)):
        if old.cell_type != "code":
            continue
        before, after = compared_text(old), compared_text(new)
        if before is None or before == after:
            continue
        diff = difflib.unified_diff(before.splitlines(), after.splitlines(),
                                    f"{name} [{index}] stored", f"{name} [{index}] fresh",
                                    lineterm="", n=1)
        problems.append("\n".join(diff))
    return problems


# ----------------------------------------------------------------- numbers in the prose
def _value(token):
    """(float value, decimals written) of a number token; a percentage is kept as written."""
    digits = token.rstrip("%").replace(",", "")
    decimals = len(digits.split(".")[1].split("e")[0].split("E")[0]) if "." in digits else 0
    return float(digits), decimals


def is_claim(token):
    """A number worth checking: with a decimal point, a percentage, or 3+ digits."""
    plain = token.lstrip("+-").rstrip("%").replace(",", "")
    return "." in plain or token.endswith("%") or "e" in plain.lower() or len(plain) >= 3


def produced_numbers(nb):
    """Every number printed by a code cell or written in one of its `assert` lines."""
    found = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        asserts = [line for line in _joined(cell.source).splitlines() if "assert" in line]
        for text in [cell_text(cell)] + asserts:
            for token in NUMBER.findall(text):
                found.add(_value(token)[0])
    return found


def _appears(token, produced):
    """Is the prose number among the produced ones, as printed or rounded as written?

    "2.3" matches a printed 2.31; "25%" matches 25 or 0.25 (and 0.2496).
    """
    value, decimals = _value(token)
    candidates = [(value, decimals)]
    if token.endswith("%"):
        candidates.append((value / 100.0, decimals + 2))
    return any(math.isclose(number, target, rel_tol=1e-12) or round(number, places) == target
               for target, places in candidates for number in produced)


def unproduced_prose_numbers(nb):
    """[(cell index, number as written)] quoted in markdown but not produced by any cell."""
    produced = produced_numbers(nb)
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        allowed = set(cell.get("metadata", {}).get(ALLOW_KEY, []))
        prose = NOT_PROSE.sub(" ", _joined(cell.source))
        for token in NUMBER.findall(prose):
            if is_claim(token) and token not in allowed and not _appears(token, produced):
                problems.append((index, token))
    return problems


# ----------------------------------------------------------------- the commands
def regenerate(paths):
    import nbformat

    for path in paths:
        print(f"executing {path.name} ...", flush=True)
        nb = nbformat.read(path, as_version=4)
        with tempfile.TemporaryDirectory() as cwd:
            execute(nb, cwd)
        nbformat.write(nb, path)


def check(paths):
    import nbformat

    failures = 0
    for path in paths:
        stored = nbformat.read(path, as_version=4)
        fresh = copy.deepcopy(stored)
        with tempfile.TemporaryDirectory() as cwd:
            execute(fresh, cwd)
        problems = drift(stored, fresh, path.name)
        problems += [f"{path.name} [{i}]: the prose quotes {n}, which no cell prints or asserts"
                     for i, n in unproduced_prose_numbers(fresh)]
        print(f"{path.name}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            print(problem)
        failures += bool(problems)
    return failures


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("regen", "check"):
        print(__doc__)
        return 2
    os.environ.setdefault("PYTHONHASHSEED", "0")  # inherited by the kernel: stable set order
    paths = select(argv[1:])
    if argv[0] == "regen":
        regenerate(paths)
        return 0
    return 1 if check(paths) else 0


if __name__ == "__main__":
    sys.exit(main())
