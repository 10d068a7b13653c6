"""The house keeps standing: wings with one import direction, no import circle, short functions.

npformer's folders are wings (docs/architecture.md), each allowed to import only the
wings below it:

    nn            the math: tape, masks, parameters, blocks, layers, kernels
    tokenizers    text <-> ids          data    corpora and loaders
    models        the three kinds of model, decoding
    training      the run bookkeeping, optimizer, batches, checkpoints, distributed
    tasks         one file per task, and the registry
    training/loop.py, training/session.py   the loop and the run around it, which read
                  the registry (and so stand above the tasks)
    tools         gradcheck, profile, sweep, plots, stats, the notebooks' helpers
    exercises     the exercises and their grader
    explore       `npformer explore`: a local web page over trained models
    cli           the shell (npformer/__main__.py runs it)
    devtools      the PyTorch oracle, the notebook drift tools, the SCAN corpus: never
                  imported by runtime code

Every import counts, also one inside a function (that is how a circle hides).
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "npformer"

# wing -> rank: a module may import its own wing or a wing of lower rank. Two wings
# of one rank may not import each other.
RANK = {"": 0, "safe_json": 0, "nn": 1, "tokenizers": 2, "data": 2, "models": 3,
        "training": 4, "tasks": 5, "training.loop": 6, "tools": 7, "exercises": 8, "explore": 8,
        "cli": 9, "__main__": 10, "devtools": 11}
# the loop and the run around it: above the tasks they run
LOOP = ("npformer.training.loop", "npformer.training.session")
MAX_FUNCTION_LINES = 80  # about one screen; the argparse tables and the loop included
# Functions still longer than that, each with its length today: the list may only
# shrink (a listed function that got short must leave it, so the list stays true).
KNOWN_LONG = {"npformer.exercises.checker.run": 81}


def module_name(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    """{module name: path} of every module of the package."""
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(path, name, known):
    """The npformer modules one module imports (at any depth of its code)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "npformer"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "npformer":
                continue
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known}


def import_graph():
    known = modules()
    return {name: imports_of(path, name, known) for name, path in known.items()}


def wing(module):
    """The folder a module lives in; an entry point (__main__) stands above everything."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return "__main__"
    if module in LOOP:
        return "training.loop"
    return parts[1] if len(parts) > 1 else ""


def circles(graph):
    """Strongly connected groups of more than one module (or a module importing itself)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):  # Tarjan's algorithm; the graph is small, recursion is fine here
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph.get(v, ()):
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def against_the_order(graph):
    """(importer, imported) pairs that run against the wing order."""
    bad = []
    for a, targets in graph.items():
        for b in targets:
            wa, wb = wing(a), wing(b)
            if wa != wb and not RANK[wb] < RANK[wa]:
                bad.append((a, b))
    return sorted(bad)


def test_every_module_is_in_a_wing():
    unknown = sorted({wing(m) for m in modules()} - set(RANK))
    assert not unknown, f"modules outside every wing: {unknown}; add the wing to RANK"


def test_no_import_circle():
    found = circles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_imports_follow_the_wing_order():
    bad = against_the_order(import_graph())
    assert not bad, "imports against the wing order:\n" + "\n".join(
        f"{a} ({wing(a)}) imports {b} ({wing(b)})" for a, b in bad)


def test_runtime_never_imports_a_developer_tool():
    graph = import_graph()
    bad = [(a, b) for a, targets in graph.items() for b in targets
           if wing(b) == "devtools" and wing(a) != "devtools"]
    assert not bad, f"runtime code imports developer tools: {bad}"


def test_the_math_imports_nothing_else():
    graph = import_graph()
    bad = [(a, b) for a, targets in graph.items() if wing(a) == "nn"
           for b in targets if wing(b) != "nn"]
    assert not bad, f"npformer/nn imports from outside npformer/nn: {bad}"


def function_lengths():
    rows = {}
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                rows[f"{name}.{node.name}"] = node.end_lineno - node.lineno + 1
    return rows


def test_functions_fit_on_a_screen():
    lengths = function_lengths()
    long = {f: n for f, n in lengths.items() if n > MAX_FUNCTION_LINES}
    new = {f: n for f, n in long.items() if f not in KNOWN_LONG or n > KNOWN_LONG[f]}
    assert not new, f"functions longer than {MAX_FUNCTION_LINES} lines (or grown): {new}"
    stale = sorted(set(KNOWN_LONG) - set(long))
    assert not stale, f"no longer long, remove from KNOWN_LONG: {stale}"


# ------------------------------------------------- the checks themselves can fail
def test_a_circle_is_found_even_through_three_modules():
    graph = {"npformer.a.x": {"npformer.a.y"}, "npformer.a.y": {"npformer.a.z"},
             "npformer.a.z": {"npformer.a.x"}, "npformer.a.w": {"npformer.a.x"}}
    assert circles(graph) == [["npformer.a.x", "npformer.a.y", "npformer.a.z"]]


def test_an_import_against_the_order_is_found():
    graph = {"npformer.nn.tape": {"npformer.training.optim"},
             "npformer.training.optim": {"npformer.nn.params"},
             "npformer.data.toy": {"npformer.tokenizers.base"}}
    assert against_the_order(graph) == [("npformer.data.toy", "npformer.tokenizers.base"),
                                        ("npformer.nn.tape", "npformer.training.optim")]


def test_a_function_level_import_counts(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from ..models import build_model\n    return build_model\n")
    known = {"npformer.models", "npformer.nn.m"}
    assert imports_of(path, "npformer.nn.m", known) == {"npformer.models"}
