"""The files the page links to: what computes each view, and where it is explained.

Each view ends with links ("computed by / explained in"); a link opens the file in
the page's source panel, scrolled to the function. The files are read once, when
the server starts, into a dict the server answers from: a request only names a key
of that dict, never a path. The docs exist in a clone of the repository (docs/ beside
npformer/); an installed copy without them shows the path only.
"""
import ast
from pathlib import Path

from .. import __file__ as _package_file

PACKAGE = Path(_package_file).resolve().parent  # npformer/
REPO = PACKAGE.parent  # a clone: docs/ sits beside npformer/

# Per view: "file:function" opens the file at that function; "file" at its top.
CITES = {
    "tokens": ["npformer/explore/views.py:token_view", "npformer/tokenizers/bpe.py:BPETokenizer",
               "npformer/tokenizers/simple.py:WordTokenizer", "docs/explore.md",
               "docs/data_formats.md"],
    "embeddings": ["npformer/explore/views.py:pca_2d", "npformer/explore/views.py:neighbours",
                   "npformer/nn/layers/embedding.py:embedding_forward",
                   "docs/derivations/embedding.md", "docs/explore.md"],
    "attention": ["npformer/explore/views.py:attention_view",
                  "npformer/models/transformer.py:Transformer.attention_maps",
                  "npformer/models/language_model.py:LanguageModel.attention_maps",
                  "npformer/nn/layers/attention.py:attention_forward",
                  "npformer/tools/plots.py:attention_for_sentence", "docs/derivations/attention.md",
                  "docs/explore.md"],
    "next": ["npformer/explore/views.py:next_token_view", "npformer/models/decoding.py:filter_logits",
             "npformer/models/decoding.py:draw_tokens", "npformer/models/decoding.py:continue_text",
             "docs/language_models.md", "docs/explore.md"],
    "translate": ["npformer/explore/views.py:translation_view",
                  "npformer/models/decoding.py:greedy_decode", "npformer/models/decoding.py:beam_search",
                  "npformer/models/transformer.py:Transformer.attention_maps", "docs/architecture.md",
                  "docs/explore.md"],
    "classify": ["npformer/explore/views.py:classification_view",
                 "npformer/nn/layers/pooling.py:pool_weights",
                 "npformer/models/classifier.py:Classifier.attention_maps",
                 "docs/language_models.md",
                 "docs/explore.md"],
    "run": ["npformer/explore/runs.py:read_log", "npformer/training/loop.py:train",
            "docs/checkpoints.md", "docs/explore.md"],
}


def _read_cited(cite):
    """(file key, text, first line, last line) of a citation "path[:qualname]", or None."""
    path, _, qualname = cite.partition(":")
    full = (PACKAGE / path[len("npformer/"):]) if path.startswith("npformer/") else REPO / path
    try:
        text = full.read_text(encoding="utf-8")
    except OSError:
        return None
    first = last = None
    if qualname:
        nodes = ast.parse(text).body
        for part in qualname.split("."):
            node = next((n for n in nodes if getattr(n, "name", None) == part), None)
            if node is None:
                raise LookupError(f"{cite}: no {part} in {path}")  # a stale citation: a bug
            nodes = getattr(node, "body", [])
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        last = node.end_lineno
    return path, text, first, last


def load_sources():
    """{view: [citation dicts]} and {file key: text}: everything the source panel can show."""
    links, texts = {}, {}
    for view, cites in CITES.items():
        links[view] = []
        for cite in cites:
            found = _read_cited(cite)
            path = cite.partition(":")[0]
            if found is None:
                links[view].append({"file": path, "name": cite.partition(":")[2] or path,
                                    "available": False})
                continue
            path, text, first, last = found
            texts[path] = text
            links[view].append({"file": path, "name": cite.partition(":")[2] or path,
                                "available": True, "first": first, "last": last})
    return links, texts
