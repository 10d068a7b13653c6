"""Checkpoints: one .npz file holding everything needed to translate or resume.

Layout of the file (a plain NumPy .npz, loaded with allow_pickle=False):
  "param/<key>"                    every model parameter, e.g. "param/encoder.0.ffn.W_1"
  "opt/exp_avg/<key>", "opt/exp_avg_sq/<key>"   AdamW moments (optional)
  "meta"                           UTF-8 bytes of a JSON document:
      {"format": "npformer-checkpoint", "version": 1,
       "model_config": {...}, "train_config": {...} or null,
       "src_tokenizer": {...}, "tgt_tokenizer": {...},
       "optimizer_t": int or null, "state": {step, best_score, history, ...},
       "labels": [class names] (classifiers; else [])}
Saving is atomic: the file is written next to its destination, flushed to disk,
then renamed over it, so an interrupted save never corrupts the last good one.

Checkpoints written before attention packed Q|K|V into one matrix (separate
W_q/W_k/W_v) are converted on load (model.upgrade_legacy_params), moments too.

Loading trusts nothing in the file, and allocates nothing the file cannot justify
(docs/reliability.md#bounded-loading): first the archive as a whole (every entry an
array, named once, all of them expanding to no more than the file, or 64 x it when
compressed); then the metadata, parsed only when its objects fit in 16 x the file
(safe_json); then every array's header, checked against the model config (a plain
numeric dtype, a size that fits in the file, no more bytes per group than the
parameters need) before any array is read. Then everything that is used later is
checked: the configs, alone and against each other (check_training_fits,
check_history), the parameter names, shapes, dtypes and values, the tokenizers
against the vocabulary sizes, the optimizer moments. Any problem is a
CheckpointError with a one-line reason. No pickle anywhere: a checkpoint from
someone else cannot run code.
"""
import json
import math
import os
import zipfile
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from .. import safe_json
from ..nn.config import ConfigError, ModelConfig
from .config import TrainConfig
from ..models.base import Model
from ..models import build_model
from ..models.bundle import ModelBundle
from ..nn.params import param_specs, upgrade_legacy_params
from ..tokenizers import TokenizerError, tokenizer_from_dict

FORMAT = "npformer-checkpoint"
VERSION = 1
MAX_META_BYTES = 64 << 20  # the JSON part: configs, tokenizers, log records
MAX_EXPANSION = 64  # a compressed archive may expand to at most 64 x its size in all
GROUPS = ("param/", "opt/exp_avg/", "opt/exp_avg_sq/")  # array entries: each <= the params


class CheckpointError(ValueError):
    """The file is missing, truncated, inconsistent, or not an npformer checkpoint."""


class Checkpoint(NamedTuple):
    model: Model  # a Transformer, LanguageModel or Classifier (model_config.kind)
    src_tokenizer: object
    tgt_tokenizer: object
    train_config: Optional[dict]
    optimizer_state: Optional[dict]  # {"t", "exp_avg", "exp_avg_sq"} for AdamW.load_state_dict
    state: dict  # step, best score, log records, ... (whatever the trainer saved)
    labels: list  # a classifier's class names, in the order of its outputs; else []

    def bundle(self):
        """The model with its tokenizers and labels (a tasks.common.ModelBundle)."""
        return ModelBundle(self.model, self.src_tokenizer, self.tgt_tokenizer, self.labels, "")


# ------------------------------------------------------------------------ saving
def save_checkpoint(path, model, src_tokenizer, tgt_tokenizer, train_config=None,
                    optimizer_state=None, state=None, labels=()):
    """Write a checkpoint atomically (temp file + fsync + rename); returns the path.

    A failure (disk full, unwritable directory) raises CheckpointError naming the
    path and leaves the previous file at `path` untouched, with no temp file behind.
    """
    path = Path(path)
    meta = {
        "format": FORMAT, "version": VERSION,
        "model_config": model.config.to_dict(),
        "train_config": train_config,
        "src_tokenizer": src_tokenizer.to_dict(),
        "tgt_tokenizer": tgt_tokenizer.to_dict(),
        "optimizer_t": None if optimizer_state is None else int(optimizer_state["t"]),
        "state": state or {},
        "labels": list(labels),
    }
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
    arrays.update({f"param/{k}": v for k, v in model.params.items()})
    if optimizer_state is not None:
        for moment in ("exp_avg", "exp_avg_sq"):
            arrays.update({f"opt/{moment}/{k}": v for k, v in optimizer_state[moment].items()})
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"{path}: could not save the checkpoint "
                              f"({err.strerror or err}); the previous file is unchanged") from None
    except BaseException:  # Ctrl-C in the middle: no half-written temp file left behind
        tmp.unlink(missing_ok=True)
        raise
    return path


# ----------------------------------------------------------------------- reading
def _resolve(path):
    """A checkpoint file: the path itself, or best.npz / last.npz in a directory."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        found = next((c for c in (path / "best.npz", path / "last.npz") if c.exists()), None)
        if found is None:
            raise CheckpointError(f"{path}: directory holds no best.npz or last.npz")
        path = found
    if not path.is_file():  # a named pipe would block, a device never end
        raise CheckpointError(f"{path}: not a regular file (a checkpoint is an .npz file)")
    return path


def _read_header(zf, info, where):
    """(shape, dtype) of one array of the archive, checked; reads only its header."""
    fmt = np.lib.format
    with zf.open(info) as f:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise CheckpointError(f"{where}: entry {info.filename} has .npy version {version}")
    if dtype.hasobject or dtype.kind not in "biuf":
        raise CheckpointError(f"{where}: entry {info.filename} has dtype {dtype}, "
                              "not a plain number type")
    n_bytes = math.prod(shape) * dtype.itemsize
    if n_bytes > info.file_size:
        raise CheckpointError(f"{where}: entry {info.filename} claims shape {shape} "
                              f"({n_bytes} bytes) but holds {info.file_size} bytes")
    return shape, dtype


def _read_member(zf, info, where):
    """One array of the archive, its header checked before any allocation."""
    _read_header(zf, info, where)
    with zf.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _entries(zf, path):
    """{name without .npy: ZipInfo} of an archive, checked before anything is read.

    Every entry must be a .npy array, named once, and all of them together may not
    expand to more than the file can hold: its own size when stored (as np.savez
    writes them), MAX_EXPANSION times it when compressed.
    """
    file_size = max(path.stat().st_size, 1)
    infos = zf.infolist()
    names = [info.filename for info in infos]
    bad = next((n for n in names if not n.endswith(".npy")), None)
    if bad is not None:
        raise CheckpointError(f"{path}: unexpected entry {bad!r}")
    if len(set(names)) != len(names):
        raise CheckpointError(f"{path}: an entry appears twice in the archive")
    compressed = any(info.compress_type != zipfile.ZIP_STORED for info in infos)
    budget = file_size * (MAX_EXPANSION if compressed else 1)
    total = sum(info.file_size for info in infos)
    if total > budget:
        raise CheckpointError(f"{path}: its entries claim {total:,} bytes in all, more than "
                              f"a file of {file_size:,} bytes can hold")
    return {info.filename[:-4]: info for info in infos}


def _open_error(path, err):
    """The CheckpointError for an archive that cannot be read at all."""
    if isinstance(err, CheckpointError):
        return err
    return CheckpointError(f"{path}: not a readable .npz checkpoint (truncated or foreign "
                           f"file?): {err}")


UNREADABLE = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
              NotImplementedError, KeyError, RuntimeError)


def _parse_meta(raw, path):
    """The checked JSON metadata of a checkpoint."""
    if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size > MAX_META_BYTES:
        raise CheckpointError(f"{path}: checkpoint metadata is malformed")
    limit = safe_json.file_limit(path.stat().st_size)
    try:
        meta = safe_json.loads(raw.tobytes(), limit, f"{path}: checkpoint metadata")
    except safe_json.JSONLimitError as err:
        raise CheckpointError(str(err)) from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise CheckpointError(f"{path}: checkpoint metadata is corrupt: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an npformer checkpoint (format "
                              f"{meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {meta.get('version')!r} is not "
                              f"supported (this npformer reads version {VERSION})")
    for key, kind in (("model_config", dict), ("src_tokenizer", dict),
                      ("tgt_tokenizer", dict), ("state", dict)):
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(f"{path}: metadata field {key!r} is missing or not a {kind.__name__}")
    return meta


def _read_meta(zf, entries, path):
    """The checked metadata of an open archive (whose entries `_entries` checked)."""
    if "meta" not in entries:
        raise CheckpointError(f"{path}: an .npz file, but not an npformer checkpoint (no meta)")
    if entries["meta"].file_size > MAX_META_BYTES:
        raise CheckpointError(f"{path}: checkpoint metadata is too large")
    return _parse_meta(_read_member(zf, entries["meta"], path), path)


def read_checkpoint_meta(path):
    """Only the checked JSON metadata (configs, tokenizers, state): no parameters are read."""
    path = _resolve(path)
    try:
        with zipfile.ZipFile(path) as zf:
            return _read_meta(zf, _entries(zf, path), path)
    except UNREADABLE as err:
        raise _open_error(path, err) from None


def _model_config(meta, path):
    """The ModelConfig of checked metadata, or CheckpointError."""
    try:
        return ModelConfig.from_dict(meta["model_config"])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{path}: inconsistent checkpoint: {err}") from None


def _read_arrays(zf, entries, config, path):
    """{name: array} of every entry but meta, reading no more than the config needs.

    All headers are read first: the arrays of each group (parameters, each optimizer
    moment) may together hold no more bytes than the model's parameters have, so a
    header cannot make the loader allocate for a model the config does not describe.
    """
    need = sum(math.prod(spec.shape) for spec in param_specs(config).values()) \
        * np.dtype(config.dtype).itemsize
    claimed = {}
    for name, info in entries.items():
        if name == "meta":
            continue
        group = next((g for g in GROUPS if name.startswith(g)), None)
        if group is None:
            raise CheckpointError(f"{path}: unexpected entry {name!r}")
        shape, dtype = _read_header(zf, info, path)
        claimed[group] = claimed.get(group, 0) + math.prod(shape) * dtype.itemsize
    for group, n_bytes in claimed.items():
        if n_bytes > need:
            raise CheckpointError(f"{path}: the {group[:-1]} entries hold {n_bytes:,} bytes; "
                                  f"the model's parameters take {need:,}")
    return {name: _read_member(zf, info, path) for name, info in entries.items()
            if name != "meta"}


MIN_MODEL_LEN = 3  # BOS, one token and EOS: the shortest sequence any command feeds a model
TASK_KINDS = {"translate": "encoder-decoder", "lm": "decoder-only", "classify": "classifier"}


def _model_kind(config):
    """The TASK_KINDS value a model config is."""
    return "classifier" if config.n_classes else config.kind


def check_training_fits(train, config, where):
    """Cross-field checks of a saved training configuration and the model it trained.

    Each field passed its own check; these are the ones that only fail together:
    the task must be the model's kind, and the training max_len must fit in the
    model's positions for the tasks that cut their examples to it (a classifier
    cuts its texts to the model's own max_len; fine-tuning runs saved before the
    architecture was recorded hold the preset's max_len, which is harmless).
    """
    if config.max_len < MIN_MODEL_LEN:
        raise CheckpointError(f"{where}: the model's max_len={config.max_len} leaves no room for "
                              f"BOS, a token and EOS (at least {MIN_MODEL_LEN})")
    if TASK_KINDS[train.task] != _model_kind(config):
        raise CheckpointError(f"{where}: the training task {train.task!r} does not make a "
                              f"{_model_kind(config)} model")
    if train.task != "classify" and train.max_len > config.max_len:
        raise CheckpointError(f"{where}: the training max_len={train.max_len} is longer than "
                              f"the model's max_len={config.max_len}")


# Log records (TrainState.history, log.jsonl): their types and the fields every
# reader of the history uses (the curves plot, the last validation line, sweeps).
RECORD_FIELDS = {"train": ("window_loss", "lr"), "valid": ("valid_loss",), "data": ()}


def check_history(records, where):
    """A run's log records must be well formed: CheckpointError naming the first bad one.

    Each record is {"type": one of RECORD_FIELDS, "step": int >= 0, name: number ...}
    and holds the fields its type needs; every value but the type is a number (or
    a true/false flag), so the records print and plot.
    """
    if not isinstance(records, list):
        raise CheckpointError(f"{where}: state.history is not a list of log records")
    for k, record in enumerate(records):
        ok = (isinstance(record, dict) and record.get("type") in RECORD_FIELDS
              and isinstance(record.get("step"), int) and not isinstance(record["step"], bool)
              and record["step"] >= 0
              and all(name in record for name in RECORD_FIELDS[record["type"]])
              and all(isinstance(v, (int, float)) for n, v in record.items() if n != "type"))
        if not ok:
            raise CheckpointError(f"{where}: log record {k} of the saved history is malformed: "
                                  f"{str(record)[:80]}")


def _check_optimizer(meta, data, params, path):
    """The AdamW state, or None; moments must match the parameters exactly."""
    t = meta.get("optimizer_t")
    if t is None:
        if any(k.startswith("opt/") for k in data):
            raise CheckpointError(f"{path}: optimizer moments present but optimizer_t is null")
        return None
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise CheckpointError(f"{path}: optimizer_t={t!r} is not an integer >= 0")
    state = {"t": t}
    for moment in ("exp_avg", "exp_avg_sq"):
        prefix = f"opt/{moment}/"
        found = {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}
        if set(found) != set(params):
            raise CheckpointError(f"{path}: optimizer {moment} does not match the parameters "
                                  f"(missing {sorted(set(params) - set(found))[:3]}, unexpected "
                                  f"{sorted(set(found) - set(params))[:3]})")
        for k, v in found.items():
            if v.shape != params[k].shape or v.dtype != params[k].dtype:
                raise CheckpointError(f"{path}: optimizer {moment}[{k}] is {v.dtype}{v.shape}, "
                                      f"the parameter is {params[k].dtype}{params[k].shape}")
            if not np.isfinite(v).all() or (moment == "exp_avg_sq" and (v < 0).any()):
                raise CheckpointError(f"{path}: optimizer {moment}[{k}] holds invalid values")
        state[moment] = found
    return state


def load_checkpoint(path):
    """Read and check a checkpoint; any problem raises CheckpointError with a one-line reason."""
    path = _resolve(path)
    try:
        with zipfile.ZipFile(path) as zf:
            entries = _entries(zf, path)
            meta = _read_meta(zf, entries, path)
            config = _model_config(meta, path)
            data = _read_arrays(zf, entries, config, path)
    except UNREADABLE as err:
        raise _open_error(path, err) from None
    try:
        if meta.get("train_config") is not None:
            check_training_fits(TrainConfig.from_dict(meta["train_config"]), config, path)
        check_history(meta["state"].get("history", []), path)
        params = {k[len("param/"):]: v for k, v in data.items() if k.startswith("param/")}
        for k, v in params.items():
            if not np.isfinite(v).all():
                raise CheckpointError(f"{path}: parameter {k} holds NaN or infinite values")
        legacy = set(params) != set(param_specs(config))
        params = upgrade_legacy_params(params, config)  # separate W_q/W_k/W_v -> packed
        model = build_model(config, params)
        src_tok = tokenizer_from_dict(meta["src_tokenizer"], where=f"{path} (source tokenizer)")
        tgt_tok = tokenizer_from_dict(meta["tgt_tokenizer"], where=f"{path} (target tokenizer)")
    except (KeyError, TypeError, ConfigError, TokenizerError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{path}: inconsistent checkpoint: {err}") from None
    for side, tok, size in (("source", src_tok, config.src_vocab_size),
                            ("target", tgt_tok, config.tgt_vocab_size)):
        if tok.vocab_size != size:
            raise CheckpointError(f"{path}: the {side} tokenizer has {tok.vocab_size} ids but "
                                  f"the model's {side} vocabulary has {size}")
    if legacy:  # the optimizer moments have the parameters' layout: convert them alike
        for moment in ("exp_avg", "exp_avg_sq"):
            prefix = f"opt/{moment}/"
            found = {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}
            if found:
                try:
                    found = upgrade_legacy_params(found, config)
                except ValueError as err:
                    raise CheckpointError(f"{path}: optimizer {moment}: {err}") from None
                data = {k: v for k, v in data.items() if not k.startswith(prefix)}
                data.update({prefix + k: v for k, v in found.items()})
    optimizer_state = _check_optimizer(meta, data, model.params, path)
    labels = meta.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) \
            or len(labels) != config.n_classes or len(set(labels)) != len(labels):
        raise CheckpointError(f"{path}: labels {str(labels)[:60]} do not fit the model's "
                              f"{config.n_classes} classes")
    return Checkpoint(model, src_tok, tgt_tok, meta.get("train_config"), optimizer_state,
                      meta["state"], labels)
