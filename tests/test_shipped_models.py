"""The models shipped with the notebooks are what today's code trains.

Notebooks look at small trained models (the toy translator, the toy language model)
that ship in notebooks/data/models/ (npformer/tools/tutorial.py), so that every machine starts
from the same weights and prints the same numbers. That must not hide a change that
alters what the code learns. So here each shipped run is made again from scratch with
today's code, exactly as `python -m npformer.devtools.tutorial_tools ship NAME` makes it, and its
validation scores must equal those recorded in made.json within what another CPU's
rounding can move them (measured, see QUALITY_TOL). A model change that trains worse or
better fails here: re-ship with that command and regenerate the notebooks.
"""
import json

import pytest

from npformer.tools import tutorial
from npformer.training.checkpoint import load_checkpoint

# How far a re-made run's validation scores may be from the recorded ones. Rounding
# differences between CPUs grow over the 400 steps, at most as far as a new seed takes the
# run (then the run is a different sample of the same training). Measured with the shipped
# settings: translator seeds 0, 1, 2: valid loss 0.340, 0.362, 0.355; BLEU 83.0, 78.3,
# 78.9; exact match 0.61, 0.51, 0.54; the NumPy backend with NumPy's SIMD off: BLEU 82.8.
# LM seeds 0, 1, 2: valid loss 2.484, 2.462, 2.446. The bounds are 1.5x the largest seed
# difference: a change that makes the code learn worse (a broken mask costs tens of BLEU)
# fails; another CPU, or another seed, does not.
QUALITY_TOL = {
    "toy": {"valid_loss": ("rel", 0.10), "bleu": ("abs", 7.0), "exact_match": ("abs", 0.15)},
    "lm": {"valid_loss": ("rel", 0.025)},
}


def test_every_shipped_run_matches_its_settings():
    """The notebooks load the shipped runs only if made with today's settings: check they are."""
    for name, (settings, snapshots) in tutorial.SHIPPED.items():
        folder = tutorial.shipped_run(name, settings)
        assert folder is not None, (
            f"notebooks/data/models/{name} was not made with today's settings of {name}: "
            f"re-make it with `python -m npformer.devtools.tutorial_tools ship {name}`")
        made = json.loads((folder / "made.json").read_text(encoding="utf-8"))
        assert made["command"] == f"python -m npformer.devtools.tutorial_tools ship {name}"
        for step in snapshots:
            assert (folder / f"step{step}.npz").exists(), f"{name}: step{step}.npz missing"
        ckpt = load_checkpoint(folder / "best.npz")
        assert ckpt.optimizer_state is None  # weights only: the notebooks read, never resume
        assert tutorial.quality(ckpt) == made["quality"]


def within(name, key, got, want):
    kind, tol = QUALITY_TOL[name][key]
    bound = tol * abs(want) if kind == "rel" else tol
    return abs(got - want) <= bound, f"{key}: {got:.4g} vs recorded {want:.4g} (allowed +-{bound:.3g})"


@pytest.mark.parametrize("name", sorted(QUALITY_TOL))
def test_today_s_code_trains_the_shipped_run_to_its_recorded_quality(name, tmp_path):
    made = json.loads((tutorial.SHIPPED_DIR / name / "made.json").read_text(encoding="utf-8"))
    reached = tutorial.make_run(name, tmp_path / name, log=lambda line: None)
    assert reached["step"] == made["quality"]["step"]
    verdicts = [within(name, key, reached[key], made["quality"][key]) for key in QUALITY_TOL[name]]
    assert all(ok for ok, _ in verdicts), (
        f"{name}: today's code trains it to other scores than the shipped run ("
        + "; ".join(why for _, why in verdicts) + f"). If the change is meant, re-make it with "
        f"`{made['command']}` and regenerate the notebooks")
