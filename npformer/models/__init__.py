"""The models: the encoder-decoder Transformer, the LanguageModel and the Classifier.

All three share the Model base (base.py) and the blocks of npformer/nn/; each kind is
one file. `build_model(config)` picks the class a ModelConfig describes.
"""
from .base import Model
from .classifier import Classifier
from .language_model import LanguageModel
from .transformer import Transformer


def build_model(config, params=None):
    """The model class a config describes: Transformer, LanguageModel or Classifier."""
    if config.n_classes:
        return Classifier(config, params)
    if config.kind == "decoder-only":
        return LanguageModel(config, params)
    return Transformer(config, params)
