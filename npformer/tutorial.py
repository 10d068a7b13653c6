"""Helpers for the notebooks: a small toy translator trained once and cached.

Several notebooks want a trained model to look at (tokens, embeddings,
attention, decoding). Training it in every notebook would cost minutes, so
`toy_model()` trains a fixed, seeded, small run once and keeps the checkpoint in
a cache directory (NPFORMER_CACHE, default ~/.cache/npformer); later calls load
it in a fraction of a second. Delete the file to retrain.
"""
import hashlib
import json
import os
from pathlib import Path

from . import __version__
from .checkpoint import load_checkpoint
from .config import TrainConfig

# A short, fixed-seed training run: good enough to show real attention patterns
# and mostly correct translations, short enough for a notebook (see docs).
# (The notebooks' text describes this exact run: change it and re-read them.)
TUTORIAL_TRAINING = dict(max_steps=400, warmup_steps=100, max_tokens=4096, max_minutes=0.0,
                         eval_every=400, eval_sentences=100, log_every=100, seed=0)


def cache_dir():
    """Where tutorial checkpoints are kept."""
    return Path(os.environ.get("NPFORMER_CACHE", Path.home() / ".cache" / "npformer"))


def toy_model(log=None, **changes):
    """A trained toy translator (a Checkpoint: .model, .src_tokenizer, .tgt_tokenizer).

    Trains on first use (about a minute or two on a 2-core CPU), then loads from the cache.
    `changes` override fields of the tutorial TrainConfig.
    """
    from .train import train

    settings = {**TUTORIAL_TRAINING, **changes}
    key = hashlib.sha1(json.dumps([__version__, settings], sort_keys=True).encode()).hexdigest()
    out = cache_dir() / f"toy-{key[:12]}"
    path = out / "best.npz"
    if not path.exists():
        cfg = TrainConfig(**settings, out_dir=str(out))
        train(cfg, log=log or (lambda line: print(line, flush=True)))
    return load_checkpoint(path)
