"""Keep the stored notebooks true to the code (a developer tool, not used at run time).

    python -m npformer.devtools.tutorial_tools regen [NAME ...]   re-execute and save, in place
    python -m npformer.devtools.tutorial_tools check [NAME ...]   execute a copy; report drift and
                                                         prose numbers; exit 1 on a problem
    python -m npformer.devtools.tutorial_tools ship [MODEL ...]   re-make the models shipped with
                                                         the notebooks (npformer/tools/tutorial.py)

NAME is a notebook's file name or its number ("08"); no NAME means every notebook, in
the order of the learning path in docs/index.md (then any notebook it does not list).
They need the test extra (nbclient, ipykernel) and a checkout of the repository.

Two checks, also run by tests/test_notebooks.py:

* drift: the stored text outputs (stdout/stderr streams, text/plain results, errors)
  must equal those of a fresh execution on any CPU: words exactly, numbers within what
  rounding allows (one unit in the last printed digit; integers exactly), or within the
  tolerance a cell declares in its metadata for numbers from live training
  (`"drift": {"rtol": 0.02, "why": "..."}`); see "drift" below. A code cell tagged
  "timing" (wall-clock times) is left out.
* prose numbers: a number quoted in a markdown cell (one with a decimal point, a
  percentage, or three or more digits, outside $math$, code and links) must appear in
  some code cell's stored output or in an `assert` line of a code cell. Numbers that are
  facts, not results ("2017"), go in the markdown cell's metadata
  `"prose_numbers_ok": ["2017"]`. (The stored outputs are what the prose quotes; the
  drift check keeps them within tolerance of a fresh run.)
"""
import copy
import difflib
import math
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
LEARNING_PATH = ROOT / "docs" / "index.md"
CELL_TIMEOUT = 300  # seconds for any single cell
SKIP_TAGS = {"timing"}  # outputs not compared: wall-clock times
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
# A cell's output is compared as a sequence of words and numbers. Words (everything that is
# not a number) must be equal. Numbers may differ by what the arithmetic allows:
#
#   * a number printed with a decimal point or an exponent was rounded when it was printed,
#     and a value that differs in its last bits on another CPU (BLAS blocking, SIMD width,
#     Numba's code for the host) can round to the next unit: one unit in the last printed
#     digit is always allowed (0.35 vs 0.34, 3.158 vs 3.159, 1.2e-03 vs 1.3e-03);
#   * an integer or a percentage without decimals is a count or a rounded share: integers
#     must be equal (counts do not round), percentages may move by one unit like decimals;
#   * a cell whose numbers come from live training (where rounding differences grow over
#     hundreds of steps) declares a tolerance in its metadata, with the reason:
#         "drift": {"rtol": 0.02, "atol": 0.5, "why": "live 400-step training run"}
#     and its numbers may then differ by atol + rtol * |stored| on top of the unit above;
#   * a cell that prints example text of a model trained live in the notebook (its words
#     depend on the CPU) declares "drift": {"text": "live", "why": "..."} and must assert
#     what it claims (e.g. that most examples are right); its output is not compared;
#   * a cell tagged "timing" (wall-clock times) is not compared.
#
# A changed word, a missing or extra output, or a number outside its tolerance is drift.
DRIFT_KEY = "drift"  # code cell metadata: {"rtol": float, "atol": float, "why": str}
TOKEN = re.compile(NUMBER.pattern)


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


def declared_tolerance(cell):
    """(rtol, atol, why) a code cell declares for its numbers; (0, 0, "") by default.

    rtol = inf stands for "live text": the cell prints example output of a model trained
    live in the notebook (translations, samples), whose words depend on the CPU; such a
    cell is not compared word by word and must assert what it claims instead.
    """
    spec = cell.get("metadata", {}).get(DRIFT_KEY) or {}
    if not isinstance(spec, dict) or set(spec) - {"rtol", "atol", "why", "text"}:
        raise ValueError(f"cell metadata {DRIFT_KEY!r} must be a dict with rtol, atol, text, why; "
                         f"got {spec!r}")
    if (spec.get("rtol") or spec.get("atol") or spec.get("text")) and not spec.get("why"):
        raise ValueError(f"a declared drift tolerance needs a reason ('why'): {spec!r}")
    if spec.get("text") is not None:
        if spec["text"] != "live":
            raise ValueError(f"drift text must be 'live', got {spec['text']!r}")
        if not any(line.lstrip().startswith("assert ")
                   for line in _joined(cell.get("source", "")).splitlines()):
            raise ValueError("a cell with live text must assert what it claims (no assert found)")
        return math.inf, 0.0, spec["why"]
    return float(spec.get("rtol", 0.0)), float(spec.get("atol", 0.0)), spec.get("why", "")


def last_digit_unit(token):
    """The value of one unit in the last printed digit of a number token; 0 for an integer.

    "0.35" -> 0.01, "83.0" -> 0.1, "1.2e-03" -> 1e-04, "30%" -> 1 (a rounded share),
    "1,234" and "12" -> 0 (counts: equal or different, never rounded).
    """
    plain = token.lstrip("+-").replace(",", "")
    mantissa, _, exponent = plain.rstrip("%").lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    if "." not in mantissa and not exponent and not plain.endswith("%"):
        return 0.0
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def split_tokens(text):
    """The text as alternating words and numbers: ([words between numbers], [numbers])."""
    words, numbers, at = [], [], 0
    for match in TOKEN.finditer(text):
        words.append(text[at: match.start()])
        numbers.append(match.group())
        at = match.end()
    words.append(text[at:])
    return words, numbers


def number_problem(old, new, rtol, atol):
    """Why the number `new` is not `old` within tolerance (a string), or None if it is."""
    a, _ = _value(old)
    b, _ = _value(new)
    unit = max(last_digit_unit(old), last_digit_unit(new))
    allowed = unit + atol + rtol * abs(a)
    if abs(a - b) <= allowed * (1 + 1e-9) or (math.isnan(a) and math.isnan(b)):
        return None
    parts = ([f"one unit in the last digit ({unit:g})"] if unit else ["counts must be equal"])
    parts += [f"rtol {rtol:g}"] if rtol else []
    parts += [f"atol {atol:g}"] if atol else []
    return f"{old} -> {new}: differs by {abs(a - b):.3g} > {allowed:.3g} ({' + '.join(parts)})"


def compare_text(before, after, rtol=0.0, atol=0.0):
    """The differences between two outputs beyond the tolerance, as readable lines."""
    old_lines, new_lines = before.splitlines(), after.splitlines()
    if len(old_lines) != len(new_lines):
        return [f"{len(old_lines)} lines stored, {len(new_lines)} now"] + _diff(before, after)
    problems = []
    for n, (old, new) in enumerate(zip(old_lines, new_lines), start=1):
        old_words, old_numbers = split_tokens(old)
        new_words, new_numbers = split_tokens(new)
        if old_words != new_words:  # a changed word, or a number that became a word
            problems.append(f"line {n} changed:\n  -{old}\n  +{new}")
            continue
        for a, b in zip(old_numbers, new_numbers):
            why = number_problem(a, b, rtol, atol)
            if why:
                problems.append(f"line {n}: {why}\n  -{old}\n  +{new}")
                break
    return problems


def _diff(before, after):
    return list(difflib.unified_diff(before.splitlines(), after.splitlines(), "stored", "fresh",
                                     lineterm="", n=1))


def compared_text(cell):
    """cell_text as compared for drift: None for a cell that is not compared (timing)."""
    tags = set(cell.get("metadata", {}).get("tags", []))
    if tags & SKIP_TAGS:
        return None
    return cell_text(cell)


def drift(stored, fresh, name="notebook"):
    """Readable differences between the stored and the fresh text outputs, one per cell.

    Numbers are compared within the tolerance described above (the cell's own, if the
    stored cell declares one); each problem names the tolerance that was used.
    """
    problems = []
    if len(stored.cells) != len(fresh.cells):
        return [f"{name}: {len(stored.cells)} cells stored, {len(fresh.cells)} executed"]
    for index, (old, new) in enumerate(zip(stored.cells, fresh.cells)):
        if old.cell_type != "code":
            continue
        before, after = compared_text(old), compared_text(new)
        if before is None or before == after:
            continue
        rtol, atol, why = declared_tolerance(old)
        if rtol == math.inf:  # live text: checked by the cell's own asserts
            found = [] if after.strip() else ["the cell printed nothing"]
        else:
            found = compare_text(before, after, rtol, atol)
        if found:
            declared = f" (declared tolerance: {why})" if why else ""
            problems.append(f"{name} [{index}]{declared}:\n" + "\n".join(found))
    return problems


def tolerances(nb):
    """[(cell index, rtol, atol, why)] of the cells that declare a drift tolerance."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            rtol, atol, why = declared_tolerance(cell)
            if rtol or atol:
                found.append((index, rtol, atol, why))
    return found


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


def _kind(token):
    """"%" for a percentage, "int" for a plain integer, "dec" for anything else."""
    if token.endswith("%"):
        return "%"
    plain = token.lstrip("+-").replace(",", "").lower()
    return "dec" if "." in plain or "e" in plain else "int"


def produced_numbers(nb):
    """{(value, kind)} of every number printed by a code cell or written in an `assert` line."""
    found = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        asserts = [line for line in _joined(cell.source).splitlines() if "assert" in line]
        for text in [cell_text(cell)] + asserts:
            for token in NUMBER.findall(text):
                found.add((_value(token)[0], _kind(token)))
    return found


def _appears(token, produced):
    """Is the prose number among the produced ones, as printed or rounded as written?

    "2.3" matches a printed 2.31; "25%" matches a printed 25% (or 25.0%, 24.6%) or a
    fraction 0.25 (0.2496), but not a plain integer 25 (a step, a count: a whole
    percentage quoted in the prose must come from a percentage or a fraction); "81.2%"
    also matches a printed 81.2 (tables that put the % in their header).
    """
    value, decimals = _value(token)
    candidates = [(value, decimals, {"%", "dec"} if token.endswith("%") and not decimals
                   else {"%", "dec", "int"})]
    if token.endswith("%"):
        candidates.append((value / 100.0, decimals + 2, {"dec"}))
    return any(kind in kinds and (math.isclose(number, target, rel_tol=1e-12)
                                  or round(number, places) == target)
               for target, places, kinds in candidates for number, kind in produced)


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
                     for i, n in unproduced_prose_numbers(stored)]
        print(f"{path.name}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for index, rtol, atol, why in tolerances(stored):
            within = "live text, not compared" if rtol == math.inf else \
                f"numbers within rtol {rtol:g}, atol {atol:g}"
            print(f"  [{index}] {within}: {why}")
        for problem in problems:
            print(problem)
        failures += bool(problems)
    return failures


def ship(names):
    """Re-make the shipped runs (all, or those named) in notebooks/data/models/."""
    from ..tools.tutorial import SHIPPED, SHIPPED_DIR, make_run

    unknown = sorted(set(names) - set(SHIPPED))
    if unknown:
        raise SystemExit(f"no shipped run named {', '.join(unknown)}; there are: "
                         f"{', '.join(SHIPPED)}")
    for name in names or SHIPPED:
        print(f"training {name} ...", flush=True)
        reached = make_run(name, SHIPPED_DIR / name, log=lambda line: print("  " + line))
        print(f"{name}: {reached}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("regen", "check", "ship"):
        print(__doc__)
        return 2
    if argv[0] == "ship":
        ship(argv[1:])
        return 0
    os.environ.setdefault("PYTHONHASHSEED", "0")  # inherited by the kernel: stable set order
    paths = select(argv[1:])
    if argv[0] == "regen":
        regenerate(paths)
        return 0
    return 1 if check(paths) else 0


if __name__ == "__main__":
    sys.exit(main())
