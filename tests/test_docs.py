"""The documentation stays true to the code.

(a) docs/cli.md documents exactly the real command line: every command and every
    option in its tables exists in `npformer.cli.build_parser()`, every option of
    the parser is in a table, documented defaults and choices are the real ones, and
    every `npformer ...` example in the docs parses.
(b) The MkDocs site builds with `--strict` (any warning, such as a broken link, a
    missing anchor or a page left out of the nav, fails the build).
(c) Code references resolve: every "`npformer/path.py: name`" in docs/ names
    something that exists (imported with importlib), every derivation page names at
    least one existing function, every "`tests/test_x.py::test_name`" exists, and
    every docs/*.md file that the code's docstrings point to exists.
"""
import argparse
import ast
import contextlib
import dataclasses
import importlib
import io
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from npformer.cli import build_parser
from npformer.tasks import COMMAND_PRESETS, PRESETS
from npformer.training.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CLI_DOC = DOCS / "cli.md"
DERIVATIONS = sorted((DOCS / "derivations").glob("*.md"))
# The names the code's docstrings use; keep them (tests below check the links).
EXPECTED_DERIVATIONS = {"linear", "embedding", "softmax", "layernorm", "attention",
                        "cross_entropy", "residual_dropout"}
BUILD_TIMEOUT = 300  # seconds; a build takes ~15 s of CPU with nine notebooks

# "`npformer/nn/layers/layernorm.py: layernorm_backward`"; the name may be dotted
# ("Tape.backward")
CODE_REF = re.compile(r"`(npformer/[\w/]+\.py): ([A-Za-z_][\w.]*)`")
PATH_REF = re.compile(r"`((?:npformer|tests)/[\w/]+\.py)`")
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
FENCE = re.compile(r"^```(\w*)\s*$")


# --------------------------------------------------------------- (a) the CLI reference
def _strip_code_blocks(text):
    """Text outside fenced code blocks."""
    out, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            inside = not inside
            continue
        if not inside:
            out.append(line)
    return "\n".join(out)


def _code_blocks(text, languages=("bash", "sh", "console")):
    """Lines of fenced code blocks in the given languages."""
    lines, language = [], None
    for line in text.splitlines():
        fence = FENCE.match(line.strip())
        if fence:
            language = None if language is not None else fence.group(1)
            continue
        if language in languages:
            lines.append(line)
    return lines


def cli_doc_sections():
    """{command (None for the program itself): section text} from docs/cli.md.

    A command's section starts at a heading "## `npformer COMMAND`"; the program's
    own options are under "## `npformer`". Any other "## " heading ends a section.
    """
    sections, current, lines = {}, "", []
    for line in CLI_DOC.read_text(encoding="utf-8").splitlines() + ["## end"]:
        if not line.startswith("## "):
            lines.append(line)
            continue
        if current != "":
            sections[current] = "\n".join(lines)
        heading = re.fullmatch(r"## `npformer(?: (\w+))?`\s*", line)
        current = heading.group(1) if heading else ""  # group(1) is None for `npformer`
        lines = []
    return sections


def documented_options(section):
    """Rows of the section's option tables: {option string: (first cell, default cell)}.

    An option table is a Markdown table whose header's first cell is "option". The
    first cell of a row holds the option in backticks: "`--beam BEAM`",
    "`-h, --help`", "`--split {train,valid,test}`", or a positional ("`text ...`").
    """
    rows, in_table = {}, False
    for line in section.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "option":
            in_table = True
            continue
        if not in_table or set(cells[0]) <= {"-", ":", " "}:  # not an option table / ---|---
            continue
        spec = re.match(r"`([^`]+)`", cells[0])
        assert spec, f"docs/cli.md: option row without a `backticked` option: {line}"
        spec = spec.group(1)
        for alias in spec.split(", "):  # "-h, --help" names one option twice
            name = alias.split(" ")[0]  # "--beam BEAM" -> "--beam"
            assert name not in rows, f"docs/cli.md documents {name} twice in one section"
            rows[name] = (spec, cells[1] if len(cells) > 1 else "")
    return rows


def parser_commands():
    """{command (None for the program): {option string or positional dest: action}}."""
    parser = build_parser()
    commands = {None: {}}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                commands[name] = _options(sub)
        else:
            commands[None].update(_options_of(action))
    return commands


def _options_of(action):
    if action.option_strings:
        return {s: action for s in action.option_strings}
    return {action.dest: action}


def _options(parser):
    found = {}
    for action in parser._actions:
        found.update(_options_of(action))
    return found


def _is_help(action):
    return isinstance(action, argparse._HelpAction)


def _real_default(command, action):
    """(has a default, the value an option takes when it is not given)."""
    if command in COMMAND_PRESETS and action.dest in {f.name for f in
                                                      dataclasses.fields(TrainConfig)}:
        # a training command's flag: the parser's None means "not given", so the value
        # is that of the command's default preset (train: "toy", the TrainConfig defaults)
        defaults = TrainConfig(**PRESETS[COMMAND_PRESETS[command][0]])
        return True, getattr(defaults, action.dest)
    value = action.default  # None, a store_true flag's False, SUPPRESS: no default to state
    return not (value is None or value is False or value == argparse.SUPPRESS), value


def _format_default(value):
    return '""' if value == "" else str(value)


def test_cli_doc_documents_every_command():
    documented = set(cli_doc_sections())
    real = set(parser_commands())
    assert not documented - real, f"docs/cli.md documents commands that do not exist: " \
                                  f"{sorted(documented - real, key=str)}"
    assert not real - documented, f"commands missing from docs/cli.md (add a section " \
                                  f"'## `npformer COMMAND`'): {sorted(real - documented, key=str)}"


@pytest.mark.parametrize("command", sorted(parser_commands(), key=lambda c: c or ""))
def test_cli_doc_options_match_the_parser(command):
    section = cli_doc_sections().get(command)
    assert section is not None, f"docs/cli.md has no section for {command}"
    documented = documented_options(section)
    real = parser_commands()[command]
    name = f"npformer {command}" if command else "npformer"

    unknown = sorted(set(documented) - set(real))
    assert not unknown, f"docs/cli.md documents options that '{name}' does not have: {unknown}"
    missing = sorted(k for k, a in real.items() if k not in documented and not _is_help(a))
    assert not missing, f"'{name}' options missing from docs/cli.md: {missing}"

    for option, (spec, default_cell) in documented.items():
        action = real[option]
        if action.choices:
            braces = re.search(r"\{([^}]*)\}", spec)
            assert braces, f"{name} {option}: list the choices as {{{','.join(action.choices)}}}"
            assert braces.group(1).split(",") == list(action.choices), (
                f"{name} {option}: docs list choices {{{braces.group(1)}}}, "
                f"the parser has {list(action.choices)}")
        has_default, value = _real_default(command, action)
        cell = re.fullmatch(r"`([^`]*)`", default_cell)
        if has_default:
            assert cell, f"{name} {option}: default {value!r} is not documented"
            assert cell.group(1) == _format_default(value), (
                f"{name} {option}: docs say default `{cell.group(1)}`, the code has {value!r}")
        else:
            assert cell is None, f"{name} {option}: docs give a default, the code has none"


@pytest.mark.parametrize("command", sorted(cli_doc_sections(), key=lambda c: c or ""))
def test_cli_doc_prose_mentions_only_real_options(command):
    """A --flag named in a command's section text must be an option of that command."""
    text = _strip_code_blocks(cli_doc_sections()[command])
    real = parser_commands().get(command, {})
    unknown = sorted(set(FLAG.findall(text)) - set(real))
    assert not unknown, f"docs/cli.md, section of {command}: unknown options {unknown}"


def example_commands():
    """(file, line) for every `npformer ...` line in a bash block of any docs page."""
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        for line in _code_blocks(page.read_text(encoding="utf-8")):
            stripped = line.strip()
            for prefix in ("npformer ", "python -m npformer "):
                if stripped.startswith(prefix):
                    found.append((page.relative_to(ROOT).as_posix(), stripped))
    return found


def test_there_are_examples():
    assert len(example_commands()) >= 20


@pytest.mark.parametrize("page,line", example_commands())
def test_every_example_command_parses(page, line):
    words = shlex.split(line, comments=True)
    words = words[words.index("npformer") + 1:]
    for i, word in enumerate(words):
        if word in ("<", ">", "|", "&&", ";"):  # shell redirection: not arguments
            words = words[:i]
            break
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            build_parser().parse_args(words)
    except SystemExit as stop:  # --help / --version exit 0; a bad option exits 2
        assert stop.code == 0, f"{page}: example does not parse: {line}\n{out.getvalue()}"


# ------------------------------------------------------------- (b) the MkDocs build
def test_mkdocs_strict_build(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocs_jupyter")
    site = tmp_path / "site"
    t0 = time.perf_counter()
    # no --quiet: it would also hide the warnings that make --strict fail
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                         cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    seconds = time.perf_counter() - t0
    problems = [line for line in run.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    assert run.returncode == 0, (f"mkdocs build --strict failed (exit {run.returncode}):\n"
                                 + "\n".join(problems or run.stderr.splitlines()[-20:]))
    assert (site / "index.html").exists()
    for page in ("architecture", "cli", "faq", "derivations/layernorm"):
        assert (site / page / "index.html").exists(), f"page {page} was not built"
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert (site / "notebooks" / notebook.stem / "index.html").exists(), (
            f"notebook {notebook.name} was not rendered")
    print(f"mkdocs build --strict: {seconds:.1f} s")


# ------------------------------------------------------------- (c) code references
def test_every_expected_derivation_page_exists():
    assert {p.stem for p in DERIVATIONS} >= EXPECTED_DERIVATIONS


def resolve(path, name):
    """Import npformer/a/b.py as npformer.a.b and look up a (dotted) name in it."""
    module = importlib.import_module(path[: -len(".py")].replace("/", "."))
    obj = module
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def code_refs(page):
    return CODE_REF.findall(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", DERIVATIONS, ids=[p.name for p in DERIVATIONS])
def test_derivation_names_an_existing_function(page):
    refs = code_refs(page)
    assert refs, f"{page.name} names no function (write `npformer/path.py: function_name`)"
    assert any(callable(resolve(path, name)) for path, name in refs)


DOC_PAGES = sorted(DOCS.rglob("*.md"))


@pytest.mark.parametrize("page", DOC_PAGES, ids=[p.relative_to(DOCS).as_posix() for p in DOC_PAGES])
def test_code_references_resolve(page):
    text = page.read_text(encoding="utf-8")
    where = page.relative_to(ROOT).as_posix()
    for path, name in CODE_REF.findall(text):
        assert (ROOT / path).is_file(), f"{where}: no file {path}"
        try:
            resolve(path, name)
        except (ImportError, AttributeError) as err:
            pytest.fail(f"{where}: `{path}: {name}` does not resolve: {err}")
    for path in PATH_REF.findall(text):
        assert (ROOT / path).is_file(), f"{where}: names {path}, which does not exist"
    for path, test_name in TEST_REF.findall(text):
        file = ROOT / path
        assert file.is_file(), f"{where}: names {path}, which does not exist"
        defined = {node.name for node in ast.walk(ast.parse(file.read_text(encoding="utf-8")))
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assert test_name in defined, f"{where}: {path} has no test {test_name}"


def test_docs_pages_named_in_the_code_exist():
    """Docstrings and help texts point to docs/*.md pages; those pages must exist."""
    missing = []
    for source in sorted((ROOT / "npformer").rglob("*.py")):
        for target in re.findall(r"docs/[\w/]+\.md", source.read_text(encoding="utf-8")):
            if not (ROOT / target).is_file():
                missing.append(f"{source.relative_to(ROOT)} -> {target}")
    assert not missing, "pages named in the code but missing from docs/:\n" + "\n".join(missing)
