"""A ModelBundle: a model with what turns text into its ids and its outputs into labels."""
from typing import NamedTuple


class ModelBundle(NamedTuple):
    """What a task builds (`Task.build`) and what a checkpoint holds (`Checkpoint.bundle()`)."""

    model: object  # a Transformer, LanguageModel or Classifier
    src_tokenizer: object
    tgt_tokenizer: object  # the same object as src_tokenizer for lm and classify
    labels: list  # class names (classify), else []
    note: str  # e.g. "started from runs/lm/best.npz (54 weights)"
