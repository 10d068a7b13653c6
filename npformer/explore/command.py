"""`npformer explore`: load the models, check the address, serve until Ctrl-C.

npformer/cli/__init__.py parses the flags and calls `explore_command`; a problem the user
can fix raises ExploreError, which the CLI prints as one line (exit code 2).
"""
import errno
import sys
from pathlib import Path

from ..training.checkpoint import CheckpointError, load_checkpoint
from .server import LOOPBACK, Explorer, Server
from .views import kind_of


class ExploreError(Exception):
    """A one-line reason the explorer cannot start (no model, unreadable file, busy port)."""


def load_models(paths, defaults, log):
    """[(label, checkpoint)] for the paths given, or for the default paths that exist.

    A path given explicitly must load (else ExploreError); a missing default is a
    note naming the command that makes it. defaults: [(path, command that makes it)]
    """
    if paths:
        wanted = [(p, None) for p in paths]
    else:
        wanted = [(p, cmd) for p, cmd in defaults if Path(p).exists()]
        for path, command in defaults:
            if not Path(path).exists():
                log(f"note: {path} not found (make it with: {command})")
    models = []
    for path, _ in wanted:
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as err:
            raise ExploreError(str(err)) from None
        step = ckpt.state.get("step")
        log(f"loaded {path}: {kind_of(ckpt)}" + (f", step {step}" if step is not None else ""))
        models.append((str(path), ckpt))
    return models


def check_run_dirs(run_dirs, log):
    """The --run directories, checked: a file is an error, a missing log a note."""
    runs = []
    for d in run_dirs:
        d = Path(d)
        if d.exists() and not d.is_dir():
            raise ExploreError(f"--run {d}: not a directory (give a run's --out-dir)")
        if not (d / "log.jsonl").exists():
            log(f"note: {d / 'log.jsonl'} does not exist yet; the run view waits for it")
        runs.append(d)
    return runs


def watched_runs(runs, model_paths):
    """The run directories to watch: --run DIRs, then the directories of loaded models with a log."""
    runs = list(runs)
    for path in model_paths:
        d = Path(path).parent
        if (d / "log.jsonl").exists():
            runs.append(d)
    unique = {}
    for d in runs:
        unique.setdefault(d.resolve(), d)
    return list(unique.values())


def explore_command(model_paths, run_dirs, host, port, defaults, verbose=False, log=None):
    """Load, bind, print the address, serve until Ctrl-C; returns the exit status (0)."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    runs = check_run_dirs(run_dirs, log)
    models = load_models(model_paths, defaults, log)
    runs = watched_runs(runs, [label for label, _ in models])
    if not models and not runs:
        made_by = ", ".join(f"{cmd} (makes {path})" for path, cmd in defaults)
        raise ExploreError(f"nothing to show: no model found; train one first with {made_by}, "
                           "or pass --model PATH or --run DIR")
    if host not in LOOPBACK:
        log(f"warning: listening on {host}, not 127.0.0.1: anyone who can reach this machine "
            "can use the explorer and read the models it shows")
    explorer = Explorer(models, runs)
    try:
        server = Server(explorer, host, port, verbose)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise ExploreError(f"port {port} is in use (another explorer?); choose another with "
                               "--port N, or --port 0 for any free port") from None
        raise ExploreError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    log("warming up (compiling the kernels once)...")
    explorer.warm_up()
    print(f"npformer explore: serving {len(models)} model(s) at {server.url} "
          "(Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    log("stopped")
    return 0
