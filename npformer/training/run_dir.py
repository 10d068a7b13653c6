"""The run directory: one writer at a time, and no finished run replaced by accident.

A training run writes best.npz, last.npz, log.jsonl and curves.png into its
out_dir. Two things could lose a finished run there:

- starting a new run in a directory that holds one. `claim` refuses, unless the
  run is resumed (resume=True, `--resume`) or replaced on purpose (overwrite=True,
  `--overwrite`, which removes the old run's files first, so the directory never
  mixes two runs);
- two runs writing into one directory at once. `claim` holds a lock file,
  out_dir/.lock, for the whole run: a second writer fails at once and is told who
  holds it. The lock is an flock(2) on that file, which the operating system
  releases when its process ends, however it ends: a run killed with SIGKILL or by
  a power cut leaves no lock that blocks the next one. The file records the pid,
  the host and the start time, for the message and for file systems without
  flock, where a lock whose process is gone (same host, pid not running) is taken
  over.

With data parallelism only rank 0 writes files, so only rank 0 claims the directory.
"""
import contextlib
import json
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: the pid check alone
    fcntl = None

RUN_FILES = ("best.npz", "last.npz", "log.jsonl", "curves.png")  # what a run writes
HOLDS_A_RUN = ("best.npz", "last.npz")  # a checkpoint: a run worth keeping (a log alone is not)
LOCK_NAME = ".lock"


class RunDirError(RuntimeError):
    """The run directory cannot be used: it holds a run, another process writes there, ..."""


def _prepare(out):
    """Create the directory and prove it is writable, before any training."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".npformer-write-test{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise RunDirError(f"out_dir={str(out)!r}: cannot write there: "
                          f"{err.strerror or err}") from None


def _holder(path):
    """What the lock file says about its holder: {"pid", "host", "started"} or {}."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _alive(info):
    """Is the process a lock file names still running? (Unknown host: assume so.)"""
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return True
    try:
        os.kill(info["pid"], 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # it exists, under another user
        return True
    return True


def _busy(out, info):
    who = (f"process {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
           if info else "another process")
    return RunDirError(f"{out} is in use by another training run ({who}); wait for it to "
                       f"finish or choose another --out-dir (if no such run exists, delete "
                       f"{out / LOCK_NAME})")


def _try_lock(fd, path):
    """True if this process now holds the lock on `fd` (the open lock file `path`)."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError:  # a file system without flock: the pid check below
            pass
    info = _holder(path)
    return not (info and _alive(info))


def _lock(out):
    """Take out/.lock; returns its open file descriptor. RunDirError if another run holds it."""
    path = out / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd, path):
            os.close(fd)
            raise _busy(out, _holder(path))
        try:  # the holder before us may have removed the file between our open and lock
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    return fd


def _unlock(out, fd):
    """Remove the lock file, then release it (in that order: see _lock's inode check)."""
    with contextlib.suppress(OSError):
        os.unlink(out / LOCK_NAME)
    os.close(fd)


@contextlib.contextmanager
def claim(out_dir, resume=False, overwrite=False, writer=True):
    """Hold out_dir for one training run: `with claim(cfg.out_dir, resume, overwrite) as out:`.

    Creates the directory (checked writable), takes the lock, then refuses a directory
    that holds a run unless resume or overwrite (which first removes the old run's
    files), and removes temporary files a killed save left behind. `writer=False`
    (ranks other than 0) only names the directory.
    """
    out = Path(out_dir)
    if not writer:
        yield out
        return
    if resume and overwrite:
        raise RunDirError("--resume continues the run in out_dir and --overwrite replaces "
                          "it: choose one")
    _prepare(out)
    fd = _lock(out)
    try:
        found = [name for name in HOLDS_A_RUN if (out / name).exists()]
        if found and not (resume or overwrite):
            resume_it = ("continue it with --resume, " if "last.npz" in found else
                         "it has no last.npz to resume (killed during its first save?); ")
            raise RunDirError(f"{out} already holds a run ({', '.join(found)}); {resume_it}"
                              "replace it with --overwrite, or choose another --out-dir")
        if overwrite and not resume:
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
        for pattern in ("*.npz.tmp*", "log.jsonl.tmp"):  # left by a run killed while saving
            for stale in out.glob(pattern):
                stale.unlink(missing_ok=True)
        yield out
    finally:
        _unlock(out, fd)
