"""The docs' formulas render with no network, checked in a real headless browser.

The site is built, then Chromium (Debian's `chromium`) opens a derivation page and a
notebook page from the disk with every host name unresolvable (so a CDN could not
help) and dumps the DOM after the scripts ran. The formulas must be typeset by MathJax
(`<mjx-container>` elements) and no raw TeX may be left in the text. The navigation
must show math in headings as plain text ("1/√D", not "$1/\\sqrt{D}$").

Without chromium the test is skipped, except under CI=true, where it fails: CI
installs chromium (.ci/run).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT = 300  # seconds
BROWSER_TIMEOUT = 120  # seconds for one page
PAGES = {  # page -> fewest typeset formulas it must show (it has more)
    "derivations/softmax/index.html": 20,
    "derivations/layernorm/index.html": 10,
    "notebooks/04_attention/index.html": 10,
}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: no host resolves
                  "--virtual-time-budget=20000"]  # let MathJax finish before the dump
RAW_TEX = re.compile(r"\\\[|\\\(|\$\$|\\frac|\\sqrt|\\operatorname")
NOT_TEXT = re.compile(r"<(script|style|code|pre|textarea)\b.*?</\1>", re.DOTALL | re.IGNORECASE)


def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed, and CI must run this test: "
                        "apt-get install -y chromium (see .ci/run)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocs_jupyter")
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "-d", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def dump_dom(browser, page):
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                              "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=BROWSER_TIMEOUT)
    assert run.returncode == 0 and "<body" in run.stdout, (
        f"chromium failed on {page}:\n{run.stderr[-2000:]}")
    return run.stdout


def test_the_site_carries_its_own_mathjax(site):
    assert (site / "javascripts/mathjax/tex-mml-chtml.js").is_file()
    assert list((site / "javascripts/mathjax/output/chtml/fonts/woff-v2").glob("*.woff"))
    for page in PAGES:
        html = (site / page).read_text(encoding="utf-8")
        remote = re.findall(r'<script[^>]*src="(https?://[^"]*mathjax[^"]*)"', html, re.I)
        assert not remote, f"{page} still loads MathJax from the network: {remote}"
        assert 'src="../../javascripts/mathjax/tex-mml-chtml.js"' in html


@pytest.mark.parametrize("page", list(PAGES))
def test_formulas_are_typeset_offline(site, page):
    browser = chromium()
    dom = dump_dom(browser, site / page)
    typeset = dom.count("<mjx-container")
    assert typeset >= PAGES[page], f"{page}: only {typeset} typeset formulas"
    text = NOT_TEXT.sub(" ", dom)
    raw = RAW_TEX.findall(text)
    assert not raw, f"{page}: raw TeX left in the page: {raw[:5]}"


def test_navigation_titles_have_no_raw_math(site):
    html = (site / "notebooks/04_attention/index.html").read_text(encoding="utf-8")
    nav = html.split('role="main"')[0]  # the sidebar comes before the page body
    assert "Why the 1/√D scale?" in nav
    assert "$1/" not in nav and "\\sqrt" not in nav


# <script src="http..."> or <link ... href="http..."> : anything a page loads from another host
REMOTE_ASSET = re.compile(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="(?:https?:)?//[^"]*"',
                          re.I)


def test_no_page_loads_anything_from_another_host(site):
    """The site works with no network: no script, stylesheet or image from a CDN."""
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20
    remote = {str(p.relative_to(site)): REMOTE_ASSET.findall(p.read_text(encoding="utf-8"))
              for p in pages}
    remote = {page: found[:3] for page, found in remote.items() if found}
    assert not remote, f"pages that load from the network: {remote}"


def test_code_is_coloured_at_build_time(site):
    """pymdownx.highlight marks code up with Pygments classes, and their colours are served."""
    html = (site / "cli/index.html").read_text(encoding="utf-8")
    assert '<div class="highlight">' in html and '<span class="' in html
    css = (site / "stylesheets/pygments.css").read_text(encoding="utf-8")
    assert ".highlight .k" in css  # keywords have a colour
    assert 'href="../stylesheets/pygments.css"' in html
