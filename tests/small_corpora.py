"""Small generated corpora written to files, for tests that train language models and classifiers.

The built-in toy text always holds 20,000 tokens of validation text and the toy
classification tasks 500 validation examples, whatever the training size: scoring them
takes seconds with the Numba kernels and minutes without (NUMBA_DISABLE_JIT=1). A file
is split by --valid-frac instead, so a test run validates on a few lines.
"""
from npformer.data import make_task, make_toy_text


def lm_text(path, n_tokens=2000, seed=0):
    """A text file of toy sentences (one per line), about n_tokens words; returns its path."""
    lines = make_toy_text(n_tokens, kind="mixed", seed=seed, n_valid_tokens=0,
                          n_test_tokens=0)["train"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def labelled(path, n=64, task="acceptability", seed=0):
    """A text<TAB>label file of n examples of a toy task; returns its path."""
    rows = make_task(task, n_train=n, n_valid=0, n_test=0, seed=seed)["train"]
    path.write_text("".join(f"{text}\t{label}\n" for text, label in rows), encoding="utf-8")
    return path
