"""MkDocs hooks for the npformer site (registered under `hooks:` in mkdocs.yml).

The tutorial notebooks live in notebooks/ at the top of the repository;
docs/notebooks is a symlink to that folder, so MkDocs finds them and the
mkdocs-jupyter plugin renders each one as a page (without executing it: the
test suite runs them). Notebooks are written over time, and `mkdocs build
--strict` fails on a nav entry or a link that points to a missing file, so
nothing on the site names a notebook file directly:

* `on_config` fills the nav section called "Notebooks" with the notebooks that
  exist (notebooks/*.ipynb, in file-name order, titled by their first heading).
* `on_page_markdown` resolves links written with the notebook's number and a
  star, `[attention](notebooks/04_*.ipynb)`, to the notebook with that number;
  while it does not exist the link becomes plain text marked "(not written yet)".

This file is not a page of the site: mkdocs.yml lists it under exclude_docs.
"""
import re
from pathlib import Path

NAV_SECTION = "Notebooks"
# [text](notebooks/04_*.ipynb), optionally ../ first (from a page in a subfolder)
# and a #fragment after
NOTEBOOK_LINK = re.compile(
    r"\[(?P<text>[^\]]+)\]\((?P<up>(?:\.\./)*)notebooks/(?P<number>\d+)_\*\.ipynb"
    r"(?P<fragment>#[^)\s]*)?\)")


def notebook_files(docs_dir):
    """Paths of the existing notebooks relative to docs_dir, sorted by name."""
    folder = Path(docs_dir) / "notebooks"
    return sorted(f"notebooks/{p.name}" for p in folder.glob("*.ipynb"))


def on_config(config):
    """Put the existing notebooks into the nav section NAV_SECTION."""
    notebooks = notebook_files(config["docs_dir"])
    nav = []
    for item in config["nav"] or []:
        if isinstance(item, dict) and NAV_SECTION in item:
            if notebooks:  # an empty section would be an empty menu
                nav.append({NAV_SECTION: notebooks})
        else:
            nav.append(item)
    config["nav"] = nav
    return config


def on_page_markdown(markdown, page, config, files):
    """Resolve `notebooks/NN_*.ipynb` links to the notebook numbered NN, if it exists."""
    by_number = {}
    for path in notebook_files(config["docs_dir"]):
        number = Path(path).name.split("_", 1)[0]
        by_number.setdefault(number, path)

    def resolve(match):
        path = by_number.get(match["number"])
        if path is None:
            return f"{match['text']} (not written yet)"
        return f"[{match['text']}]({match['up']}{path}{match['fragment'] or ''})"

    return NOTEBOOK_LINK.sub(resolve, markdown)
