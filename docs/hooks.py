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

* `on_files` adds MathJax to the site from an installed Python package
  (django-static-mathjax, in the test and docs extras: MathJax 3, Apache-2.0), so
  formulas render with no network, in `mkdocs build` and in `mkdocs serve`. Only the
  files a page loads are copied: the combined TeX component and what it loads lazily
  (fonts, TeX extensions).
* `on_files` also writes stylesheets/pygments.css, the colours of Pygments' default
  style for the code blocks that pymdownx.highlight marks up at build time (the theme's
  own highlight.js would come from a CDN, so it is switched off in mkdocs.yml).
* `on_page_content` turns $math$ in heading titles into plain text for the navigation
  and the table of contents ("Why the $1/\\sqrt{D}$ scale?" -> "Why the 1/√D scale?");
  the heading on the page itself stays typeset.
* `on_page_content` also rewrites the links of notebook pages. A notebook links the docs
  and the source files relative to notebooks/, so that they work in Jupyter:
  `[softmax](../docs/derivations/softmax.md)`, `[attention](../npformer/nn/layers/attention.py)`.
  On the site a docs link becomes the link to that page; a source file is not part of the
  site, so its link is dropped and the text stays. A link to a file that does not exist
  fails the build.

This file is not a page of the site: mkdocs.yml lists it under exclude_docs.
"""
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

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


# ----------------------------------------------------------------- MathJax, served locally
MATHJAX_SITE_DIR = "javascripts/mathjax"  # mkdocs.yml loads javascripts/mathjax/tex-mml-chtml.js
MATHJAX_FILES = ("tex-mml-chtml.js", "output/chtml/fonts/woff-v2/*.woff",
                 "input/tex/extensions/**/*.js")


def mathjax_dir():
    """The es5/ folder of the installed MathJax (package django-static-mathjax)."""
    try:
        import mathjax
    except ImportError:
        raise PluginError("MathJax is not installed: pip install -e \".[test]\" "
                          "(the docs need django-static-mathjax)") from None
    folder = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (folder / "tex-mml-chtml.js").is_file():
        raise PluginError(f"no MathJax at {folder}: reinstall django-static-mathjax")
    return folder


def on_files(files, config):
    """Add the MathJax files to the site, read from the installed package."""
    folder = mathjax_dir()
    for pattern in MATHJAX_FILES:
        for path in sorted(folder.glob(pattern)):
            uri = f"{MATHJAX_SITE_DIR}/{path.relative_to(folder).as_posix()}"
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    files.append(File.generated(config, PYGMENTS_CSS, content=pygments_css()))
    return files


PYGMENTS_CSS = "stylesheets/pygments.css"


def pygments_css():
    """CSS for the classes pymdownx.highlight gives code tokens (Pygments' default style)."""
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(style="default").get_style_defs(".highlight")


# ----------------------------------------------------------------- math in titles
TITLE_MATH = re.compile(r"\$([^$]+)\$")
TEX_SYMBOLS = {r"\sqrt": "√", r"\cdot": "·", r"\times": "×", r"\le": "≤", r"\ge": "≥",
               r"\infty": "∞", r"\to": "→", r"\alpha": "α", r"\beta": "β", r"\gamma": "γ",
               r"\epsilon": "ε", r"\lambda": "λ", r"\mu": "μ", r"\sigma": "σ"}


def plain_math(title):
    """Heading text with $TeX$ spans written as plain text: "$1/\\sqrt{D}$" -> "1/√D"."""
    def plain(match):
        tex = re.sub(r"\\(?:text|mathrm|operatorname)\{([^}]*)\}", r"\1", match.group(1))
        for command, symbol in TEX_SYMBOLS.items():
            tex = re.sub(re.escape(command) + r"(?![A-Za-z])", symbol, tex)
        tex = re.sub(r"\\[A-Za-z]+", "", tex)  # any other command: dropped
        return tex.replace("{", "").replace("}", "").replace("\\", "").strip()
    return TITLE_MATH.sub(plain, title)


def _plain_toc(items):
    for item in items:
        item.title = plain_math(item.title)
        _plain_toc(item.children)


def on_page_content(html, page, config, files):
    """Navigation and table of contents show math in headings as plain text; notebook links."""
    _plain_toc(page.toc)
    if page.title:
        page.title = plain_math(page.title)
    if page.file.src_uri.endswith(".ipynb"):
        html = notebook_links(html, page, config, files)
    return html


# ----------------------------------------------------------------- links in notebooks
# <a href="../docs/derivations/softmax.md#fragment">...</a>, as nbconvert writes a notebook's
# [text](../docs/...) link; also ../npformer/, ../tests/, ../benchmarks/
NOTEBOOK_REPO_LINK = re.compile(
    r'<a href="\.\./(?P<path>(?:docs|npformer|tests|benchmarks)/[^"#]*)(?P<fragment>#[^"]*)?"'
    r'[^>]*>(?P<text>.*?)</a>', re.DOTALL)


def notebook_links(html, page, config, files):
    """Links written relative to notebooks/ (for Jupyter) -> links that work on the site."""
    root = Path(config["config_file_path"]).parent

    def resolve(match):
        path = match["path"]
        if not (root / path).exists():
            raise PluginError(f"{page.file.src_uri} links to {path}, which does not exist")
        if path.startswith("docs/") and path.endswith(".md"):
            target = files.get_file_from_path(path[len("docs/"):])
            if target is None:
                raise PluginError(f"{page.file.src_uri} links to {path}, which is not on the site")
            href = target.url_relative_to(page.file) + (match["fragment"] or "")
            return f'<a href="{href}">{match["text"]}</a>'
        return match["text"]  # a source file: not part of the site, keep its name
    return NOTEBOOK_REPO_LINK.sub(resolve, html)
