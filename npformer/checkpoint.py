"""Checkpoints: one .npz file holding everything needed to translate or resume.

Layout of the file (a plain NumPy .npz, loaded with allow_pickle=False):
  "param/<key>"                    every model parameter, e.g. "param/encoder.0.ffn.W_1"
  "opt/exp_avg/<key>", "opt/exp_avg_sq/<key>"   AdamW moments (optional)
  "meta"                           UTF-8 bytes of a JSON document:
      {"format": "npformer-checkpoint", "version": 1,
       "model_config": {...}, "train_config": {...} or null,
       "src_tokenizer": {...}, "tgt_tokenizer": {...},
       "optimizer_t": int or null, "state": {step, epoch, rng, best, ...}}
Saving is atomic: the file is written next to its destination, flushed to disk,
then renamed over it, so an interrupted save never corrupts the last good one.
No pickle anywhere: a checkpoint from someone else cannot run code.
"""
import json
import os
import zipfile
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from .config import ConfigError, ModelConfig
from .model import Transformer
from .tokenizers import TokenizerError, tokenizer_from_dict

FORMAT = "npformer-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """The file is missing, truncated, or not an npformer checkpoint."""


class Checkpoint(NamedTuple):
    model: Transformer
    src_tokenizer: object
    tgt_tokenizer: object
    train_config: Optional[dict]
    optimizer_state: Optional[dict]  # {"t", "exp_avg", "exp_avg_sq"} for AdamW.load_state_dict
    state: dict  # step, epoch, rng state, best score, ... (whatever the trainer saved)


def save_checkpoint(path, model, src_tokenizer, tgt_tokenizer, train_config=None,
                    optimizer_state=None, state=None):
    """Write a checkpoint atomically (temp file + fsync + rename)."""
    path = Path(path)
    meta = {
        "format": FORMAT, "version": VERSION,
        "model_config": model.config.to_dict(),
        "train_config": train_config,
        "src_tokenizer": src_tokenizer.to_dict(),
        "tgt_tokenizer": tgt_tokenizer.to_dict(),
        "optimizer_t": None if optimizer_state is None else int(optimizer_state["t"]),
        "state": state or {},
    }
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
    arrays.update({f"param/{k}": v for k, v in model.params.items()})
    if optimizer_state is not None:
        for moment in ("exp_avg", "exp_avg_sq"):
            arrays.update({f"opt/{moment}/{k}": v for k, v in optimizer_state[moment].items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    return path


def load_checkpoint(path):
    """Read a checkpoint; any problem raises CheckpointError with a one-line reason."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        candidates = [path / "best.npz", path / "last.npz"]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise CheckpointError(f"{path}: directory holds no best.npz or last.npz")
        path = found
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable .npz checkpoint (truncated or foreign "
                              f"file?): {err}") from None
    if "meta" not in data:
        raise CheckpointError(f"{path}: an .npz file, but not an npformer checkpoint (no meta)")
    try:
        meta = json.loads(data["meta"].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: checkpoint metadata is corrupt: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an npformer checkpoint (format "
                              f"{meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {meta.get('version')} is not "
                              f"supported (this npformer reads version {VERSION})")
    try:
        config = ModelConfig.from_dict(meta["model_config"])
        params = {k[len("param/"):]: v for k, v in data.items() if k.startswith("param/")}
        model = Transformer(config, params)
        src_tok = tokenizer_from_dict(meta["src_tokenizer"], where=f"{path} (source tokenizer)")
        tgt_tok = tokenizer_from_dict(meta["tgt_tokenizer"], where=f"{path} (target tokenizer)")
    except (KeyError, TypeError, ConfigError, TokenizerError, ValueError) as err:
        raise CheckpointError(f"{path}: inconsistent checkpoint: {err}") from None
    optimizer_state = None
    if meta.get("optimizer_t") is not None:
        optimizer_state = {"t": meta["optimizer_t"], "exp_avg": {}, "exp_avg_sq": {}}
        for k, v in data.items():
            for moment in ("exp_avg", "exp_avg_sq"):
                prefix = f"opt/{moment}/"
                if k.startswith(prefix):
                    optimizer_state[moment][k[len(prefix):]] = v
    return Checkpoint(model, src_tok, tgt_tok, meta.get("train_config"), optimizer_state,
                      meta.get("state") or {})
