"""The training-run view: the records of a run's log.jsonl as they are appended, and its checkpoints.

A run directory is given on the command line (`npformer explore --run DIR`) or is
the directory of a loaded checkpoint; a request only names it by its index in
that fixed list, so no path ever comes from a request.

log.jsonl grows one line per record while the run trains (train.py), and is
rewritten whole when a run resumes. A reader keeps a byte offset: each poll
returns the complete lines after it; a file that shrank or was replaced (another
inode) is read again from the start, and the page is told to forget what it had.
"""
import json
import math
from pathlib import Path

from ..training.checkpoint import CheckpointError, read_checkpoint_meta

MAX_CHUNK = 1 << 20  # bytes of new log lines sent per poll; the page asks again for more


def _finite(value):
    """A log record made JSON-safe for a browser: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def read_log(path, offset=0, file_id=None):
    """The records of log.jsonl after byte `offset` (complete lines only).

    file_id identifies the file the offset belongs to (inode and device); when it
    changed, or the file is now shorter than the offset, reading starts again at 0
    and `reset` is true. Returns {records, offset, file_id, reset, exists}.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            st = path.stat()
            current = f"{st.st_dev}:{st.st_ino}"
            reset = file_id is not None and (file_id != current or st.st_size < offset)
            if reset or file_id is None:
                offset = 0
            f.seek(offset)
            data = f.read(MAX_CHUNK)
    except FileNotFoundError:
        return {"records": [], "offset": 0, "file_id": None, "reset": file_id is not None,
                "exists": False}
    end = data.rfind(b"\n") + 1  # only whole lines: the writer may be mid-line
    records = []
    for line in data[:end].splitlines():
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # not ours to fix: skip a damaged line, keep the rest
        if isinstance(record, dict):
            records.append(_finite(record))
    return {"records": records, "offset": offset + end, "file_id": current, "reset": reset,
            "exists": True}


class CheckpointList:
    """The checkpoints (*.npz) of a run directory, their step and last validation.

    Metadata is read only when a file changed (size or modification time).
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        self._seen = {}  # file name -> ((size, mtime), summary)

    def summaries(self):
        out = []
        for path in sorted(self.directory.glob("*.npz")):
            try:
                st = path.stat()
            except OSError:
                continue  # replaced between the listing and now
            stamp = (st.st_size, st.st_mtime_ns)
            seen = self._seen.get(path.name)
            if seen is None or seen[0] != stamp:
                seen = (stamp, self._summary(path, st))
                self._seen[path.name] = seen
            out.append(seen[1])
        return out

    @staticmethod
    def _summary(path, st):
        row = {"name": path.name, "bytes": st.st_size, "modified": st.st_mtime}
        try:
            meta = read_checkpoint_meta(path)
        except CheckpointError as err:
            return {**row, "error": str(err)}
        state = meta["state"]
        valid = [h for h in state.get("history", []) if isinstance(h, dict)
                 and h.get("type") == "valid"]
        kind = meta["model_config"].get("kind")
        return {**row, "step": state.get("step"), "kind": kind,
                "valid": _finite(valid[-1]) if valid else None}


class Run:
    """One run directory the server watches."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.checkpoints = CheckpointList(self.directory)

    def poll(self, offset=0, file_id=None):
        """New log records since `offset`, and the checkpoints as they are now."""
        log = read_log(self.directory / "log.jsonl", offset, file_id)
        return {"directory": str(self.directory), **log,
                "checkpoints": self.checkpoints.summaries()}
