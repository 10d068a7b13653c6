"""Every tutorial notebook runs top to bottom without an error, and stays true to the code.

Each notebook is executed in a fresh kernel with nbclient; a cell that raises
fails the test and the message shows the cell's source and the error.

For the notebooks in DRIFT_CHECKED the same execution also checks (with
npformer/devtools/tutorial_tools.py) that the stored text outputs equal the fresh ones on any
CPU: words exactly, numbers within one unit in their last printed digit (integers
exactly), or within the tolerance a cell declares for numbers from live training
(cells tagged "timing" left out). Without executing anything, every number quoted
in the prose must be printed or asserted by some cell's stored output.
Regenerate stored outputs with `python -m npformer.devtools.tutorial_tools regen [NAME ...]`.
"""
import copy
import math
import re
from pathlib import Path

import pytest

from npformer.devtools import tutorial_tools as tt

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds for any single cell
# Notebooks whose stored outputs and prose numbers are checked against a fresh run: all of
# them (a new notebook is checked from the start; regenerate its outputs before committing).
DRIFT_CHECKED = [p.name for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb files"


def test_drift_checked_notebooks_exist():
    missing = sorted(set(DRIFT_CHECKED) - {p.name for p in NOTEBOOKS})
    assert not missing, f"DRIFT_CHECKED names notebooks that do not exist: {missing}"


# [text](../docs/page.md#fragment) or [text](../npformer/file.py): relative to notebooks/
RELATIVE_LINK = re.compile(r"\]\((?P<target>\.\./[^)#\s]+)(?:#[^)\s]*)?\)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_links_resolve(path):
    """Links to the docs and the code are relative to notebooks/ and point to existing files.

    (docs/hooks.py turns them into site links, or plain text for source files.)
    """
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    targets = [m["target"] for c in nb.cells if c.cell_type == "markdown"
               for m in RELATIVE_LINK.finditer(c.source)]
    missing = [t for t in targets if not (path.parent / t).exists()]
    assert not missing, f"{path.name} links to files that do not exist: {missing}"
    if path.name[:2].isdigit():  # the numbered tutorials link what they explain
        assert any(t.startswith("../docs/") for t in targets), f"{path.name} links no docs page"
        assert any(t.startswith("../npformer/") for t in targets), f"{path.name} links no source file"


def test_learning_path_lists_every_notebook_in_order():
    """docs/index.md links every notebook; regen runs them in that order."""
    text = tt.LEARNING_PATH.read_text(encoding="utf-8")
    unlisted = [p.name for p in NOTEBOOKS
                if f"notebooks/{p.stem.split('_')[0]}_*.ipynb" not in text
                and f"notebooks/{p.name}" not in text]
    assert not unlisted, f"notebooks missing from the learning path in docs/index.md: {unlisted}"
    numbered = [p.name for p in tt.learning_path() if p.name[:2].isdigit()]
    assert numbered == sorted(numbered), f"learning path out of numeric order: {numbered}"


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory):
    """One empty tutorial cache for all notebooks.

    The first notebook that needs the trained toy model trains it (as on a new
    machine), the others reuse it.
    """
    return tmp_path_factory.mktemp("npformer-cache")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, fresh_cache, monkeypatch):
    monkeypatch.setenv("NPFORMER_CACHE", str(fresh_cache))  # inherited by the kernel
    monkeypatch.setenv("PYTHONHASHSEED", "0")  # as `tutorial_tools regen` runs them
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    stored = nbformat.read(path, as_version=4)
    nb = copy.deepcopy(stored)
    try:
        tt.execute(nb, tmp_path, timeout=CELL_TIMEOUT)
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name}: a cell failed\n{str(err)[:3000]}")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    if path.name not in DRIFT_CHECKED:
        return
    problems = tt.drift(stored, nb, path.name)
    assert not problems, (f"{path.name}: stored outputs differ from a fresh run (regenerate "
                          f"with `python -m npformer.devtools.tutorial_tools regen {path.stem}`):\n"
                          + "\n".join(problems)[:4000])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_prose_numbers_are_printed(path):
    """Every number the prose quotes is in a stored output (which the drift check keeps fresh)."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    numbers = tt.unproduced_prose_numbers(nb)
    assert not numbers, (f"{path.name}: numbers in the prose that no cell prints or asserts "
                         f"(cell index, number): {numbers}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_declared_tolerances_are_well_formed(path):
    """A declared tolerance has a reason; live text asserts its claim; no retired tags."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    for index, rtol, atol, why in tt.tolerances(nb):  # raises on a malformed declaration
        assert why and (rtol == math.inf or 0 < rtol <= 2.0 or rtol == 0 and atol > 0), \
            f"{path.name} [{index}]: rtol {rtol}, atol {atol}"
    retired = [(i, c.metadata["tags"]) for i, c in enumerate(nb.cells)
               if set(c.get("metadata", {}).get("tags", [])) & {"nondeterministic", "numbers-vary"}]
    assert not retired, f"{path.name}: tags that no longer mean anything: {retired}"


# ----------------------------------------------------------------- the checkers themselves
def small_notebook(cells):
    """A notebook from [(kind, source, outputs text or None, metadata)]."""
    nbformat = pytest.importorskip("nbformat")
    v4 = nbformat.v4
    nb = v4.new_notebook()
    for kind, source, text, metadata in cells:
        if kind == "markdown":
            nb.cells.append(v4.new_markdown_cell(source, metadata=metadata))
        else:
            outputs = [v4.new_output("stream", name="stdout", text=text)] if text else []
            nb.cells.append(v4.new_code_cell(source, outputs=outputs, metadata=metadata))
    return nb


def test_drift_finds_a_changed_output_and_shows_it():
    stored = small_notebook([("code", "print(loss)", "loss 2.31\n", {})])
    fresh = small_notebook([("code", "print(loss)", "loss 2.47\n", {})])
    problems = tt.drift(stored, fresh, "nb.ipynb")
    assert len(problems) == 1
    assert "-loss 2.31" in problems[0] and "+loss 2.47" in problems[0] and "[0]" in problems[0]
    assert tt.drift(stored, copy.deepcopy(stored)) == []


def test_drift_allows_one_unit_in_the_last_digit_and_nothing_more():
    def compare(old, new, meta=None):
        return tt.drift(small_notebook([("code", "f()", old, meta or {})]),
                        small_notebook([("code", "f()", new, meta or {})]))

    # rounding on another CPU: one unit in the last printed digit passes
    assert compare("la 0.94, lo 0.01\n", "la 0.93, lo 0.01\n") == []
    assert compare("dist [3.158 2.957]\n", "dist [3.159 2.956]\n") == []
    assert compare("err 1.2e-03\n", "err 1.3e-03\n") == []
    assert compare("accuracy 30%\n", "accuracy 29%\n") == []
    assert compare("x -0.000\n", "x 0.000\n") == []
    # more than a unit, a count, a changed word, a missing or extra line: drift
    problems = compare("BLEU 83.0\n", "BLEU 82.2\n")
    assert len(problems) == 1 and "83.0 -> 82.2" in problems[0] and "one unit" in problems[0]
    assert compare("la 0.94\n", "la 0.92\n")
    assert compare("11 of 16 right\n", "10 of 16 right\n")  # counts do not round
    assert compare("err 6.7e-16\n", "err 4.4e-16\n")  # print a bound instead
    assert compare("la 0.94\n", "lo 0.94\n")
    assert compare("a\nb\n", "a\n")
    stored = small_notebook([("code", "f()", "loss 2.31\n", {})])
    missing = small_notebook([("code", "f()", None, {})])
    assert tt.drift(stored, missing)


def test_drift_uses_a_declared_tolerance_and_names_it():
    meta = {"drift": {"rtol": 0.05, "why": "live 100-step training run"}}
    stored = small_notebook([("code", "t()", "valid loss 2.13, accuracy 30%, step 12\n", meta)])
    moved = small_notebook([("code", "t()", "valid loss 2.21, accuracy 29%, step 12\n", meta)])
    assert tt.drift(stored, moved) == []  # within 5% (+ one unit)
    far = small_notebook([("code", "t()", "valid loss 2.40, accuracy 30%, step 12\n", meta)])
    problems = tt.drift(stored, far)
    assert len(problems) == 1 and "rtol 0.05" in problems[0] and "live 100-step" in problems[0]
    word = small_notebook([("code", "t()", "valid loss 2.13, accuracy 30%, epoch 12\n", meta)])
    assert tt.drift(stored, word)  # a tolerance is for numbers, never for words
    assert tt.tolerances(stored) == [(0, 0.05, 0.0, "live 100-step training run")]
    with pytest.raises(ValueError, match="reason"):
        tt.declared_tolerance({"metadata": {"drift": {"rtol": 0.1}}})


def test_live_text_is_left_to_the_cells_asserts():
    meta = {"drift": {"text": "live", "why": "example outputs of a model trained live"}}
    src = "show()\nassert n_right >= 5"
    stored = small_notebook([("code", src, "model: c b a (ok)\n7 of 8 right\n", meta)])
    other = small_notebook([("code", src, "model: c a a (wrong)\n6 of 8 right\n", meta)])
    assert tt.drift(stored, other) == []
    assert tt.drift(stored, small_notebook([("code", src, None, meta)]))  # printed nothing
    with pytest.raises(ValueError, match="assert"):
        tt.drift(small_notebook([("code", "show()", "x\n", meta)]), stored)


def test_drift_skips_timing_cells():
    meta = {"tags": ["timing"]}
    assert tt.drift(small_notebook([("code", "t()", "took 1.20 s\n", meta)]),
                    small_notebook([("code", "t()", "took 3.41 s\n", meta)])) == []


def test_drift_ignores_kernel_noise_but_not_warnings():
    stored = small_notebook([("code", "f()", "ok\n", {})])
    fresh = small_notebook([("code", "f()", "ok\n", {})])
    fresh.cells[0].outputs.append(
        {"output_type": "stream", "name": "stderr",
         "text": "[IPKernelApp] WARNING | Kernel is running over TCP without encryption.\n"})
    assert tt.drift(stored, fresh) == []
    fresh.cells[0].outputs.append({"output_type": "stream", "name": "stderr",
                                   "text": "RuntimeWarning: overflow\n"})
    assert len(tt.drift(stored, fresh)) == 1


def test_prose_numbers_must_be_produced():
    nb = small_notebook([
        ("markdown", "The loss falls to 2.3 after 1000 steps, 25% faster; "
                     "seed 7, $10000^{2i/C}$, `lr=0.001`, [see](x/5.16.md), "
                     "Vaswani et al. 2017, 4 heads.", None, {}),
        ("code", "train()", "step 1000: loss 2.31, speed-up 0.25\n", {}),
    ])
    assert tt.unproduced_prose_numbers(nb) == [(0, "2017")]
    nb.cells[0].metadata[tt.ALLOW_KEY] = ["2017"]
    assert tt.unproduced_prose_numbers(nb) == []
    nb.cells[0].source += " It shows a quarter, 5.16e-04."
    assert tt.unproduced_prose_numbers(nb) == [(0, "5.16e-04")]
    nb.cells[1].source += "\nassert abs(peak - 5.16e-04) < 1e-6"
    assert tt.unproduced_prose_numbers(nb) == []


def test_select_by_number_and_name():
    assert [p.name for p in tt.select(["exercises_backward"])] == ["exercises_backward.ipynb"]
    first = NOTEBOOKS[0]
    assert tt.select([first.stem.split("_")[0]]) == [first]
    with pytest.raises(SystemExit, match="no notebook named"):
        tt.select(["no-such-notebook"])
