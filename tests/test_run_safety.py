"""Run directories, text and environments, hangs, silent wrong answers (issue 24, classes 2-4, 6).

Each example of the issue has a test and a neighbour. Commands whose behaviour depends
on how Python starts (the locale's encoding, a closed pipe, environment variables, a
read-only cache) or that could hang run in a subprocess with a timeout; the others
in-process through `main`.
"""
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import npformer
import npformer.training.checkpoint
import npformer.tools.profile
import npformer.tools.sweep
import npformer.training.loop
import npformer.training.session
from npformer.training import run_dir
from npformer.training.checkpoint import load_checkpoint
from npformer.cli import main
from npformer.training.config import TrainConfig
from npformer.data import DataError
from npformer.models.decoding import draw_tokens, tempered
from npformer.training.distributed import launcher_env
from npformer.training.run_dir import RunDirError, claim
from npformer.training.loop import train
from small_corpora import labelled, lm_text

TINY = dict(d_model=16, n_heads=2, d_ff=32, n_layers=1, max_len=16, max_tokens=256,
            max_steps=2, eval_every=2, eval_sentences=3, log_every=1, max_minutes=0.0,
            warmup_steps=1)
FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
LM_FLAGS = [flag for flag in FLAGS if not flag.startswith("--eval-sentences")]
STRICT = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}  # a desktop UTF-8 locale
REPO = Path(npformer.__file__).resolve().parents[1]


def quiet(line):
    pass


@contextlib.contextmanager
def strict_streams(monkeypatch, stdin=b""):
    """sys.stdin/stdout as Python makes them under PYTHONIOENCODING=utf-8:strict.

    Yields a function that returns the bytes written to stdout so far.
    """
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8",
                                                       errors="strict"))
    stdout = io.TextIOWrapper(out, encoding="utf-8", errors="strict", write_through=True)
    monkeypatch.setattr(sys, "stdout", stdout)
    yield lambda: (stdout.flush(), out.getvalue())[1]


@contextlib.contextmanager
def deadline(seconds):
    """Fail with TimeoutError instead of hanging (what these tests guard against)."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def cli(args, stdin=b"", env=None, timeout=120):
    """`npformer ARGS` in a subprocess; args may be bytes (undecodable file names)."""
    return subprocess.run([sys.executable, "-m", "npformer", *args], input=stdin,
                          capture_output=True, timeout=timeout, env=env or os.environ)


def one_line(code, err, needle, status=2):
    err = err.decode() if isinstance(err, bytes) else err
    assert code == status, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: run directory}: translator, word LM, BPE LM, a classifier fine-tuned from the LM."""
    root = tmp_path_factory.mktemp("safety")
    text = str(lm_text(root / "text.txt"))
    split = dict(valid_frac=0.1, test_frac=0.1)  # a few lines to validate on (small_corpora)
    configs = {"translator": TrainConfig(**TINY, data="copy"),
               "lm": TrainConfig(**TINY, **split, task="lm", data=text),
               "lmbpe": TrainConfig(**TINY, **split, task="lm", data=text, tokenizer="bpe",
                                    vocab_size=300)}
    configs["classifier"] = TrainConfig(**{**TINY, "max_len": 64}, **split, task="classify",
                                        data=str(labelled(root / "labelled.tsv")),
                                        init_from=str(root / "lm" / "best.npz"))
    for name, cfg in configs.items():
        train(cfg.replace(out_dir=str(root / name)), log=quiet)
    return {**{name: root / name for name in configs}, "text": text}


# ------------------------------------------------------------- class 2: run dirs
def test_a_new_run_in_a_directory_that_holds_one_is_refused(runs, tmp_path, capsys):
    """Issue: re-running a training command replaced best.npz, last.npz and log.jsonl."""
    out = tmp_path / "lm"
    shutil.copytree(runs["lm"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    data = ["--data", runs["text"], "--valid-frac", "0.1", "--test-frac", "0.1"]
    code = main(["pretrain", *LM_FLAGS, *data, "--out-dir", str(out)])
    one_line(code, capsys.readouterr().err, "already holds a run (best.npz, last.npz)")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(RunDirError, match="--overwrite"):  # the Python API alike
        train(TrainConfig(**TINY, task="lm", data=runs["text"], out_dir=str(out)), log=quiet)
    # --overwrite replaces the run: the old log's records are gone, not mixed in
    assert main(["pretrain", *LM_FLAGS, *data, "--max-steps", "1", "--eval-every", "1",
                 "--out-dir", str(out), "--overwrite"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert max(h["step"] for h in log) == 1
    capsys.readouterr()
    code = main(["pretrain", "--resume", "--overwrite", "--out-dir", str(out)])
    one_line(code, capsys.readouterr().err, "choose one")


def test_a_second_writer_fails_at_once_and_says_who_writes(tmp_path, capsys):
    out = tmp_path / "busy"
    with claim(out):  # as another run would: flock conflicts between open files
        code = main(["train", "--preset", "copy", "--out-dir", str(out)])
        one_line(code, capsys.readouterr().err, f"in use by another training run (process "
                                                f"{os.getpid()} on {socket.gethostname()}")
        with pytest.raises(RunDirError, match="in use"):
            train(TrainConfig(**TINY, data="copy", out_dir=str(out)), log=quiet)
    assert not (out / run_dir.LOCK_NAME).exists()  # released at the end
    train(TrainConfig(**TINY, data="copy", out_dir=str(out)), log=quiet)  # and free again


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path):
    out = tmp_path / "killed"
    code = ("import os, signal; from npformer.training.run_dir import claim; "
            f"held = claim({str(out)!r}); held.__enter__(); os.kill(os.getpid(), signal.SIGKILL)")
    r = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert r.returncode == -signal.SIGKILL and (out / run_dir.LOCK_NAME).exists()
    train(TrainConfig(**TINY, data="copy", out_dir=str(out)), log=quiet)
    assert (out / "best.npz").exists() and not (out / run_dir.LOCK_NAME).exists()


def test_without_flock_the_recorded_pid_and_host_decide(tmp_path, monkeypatch):
    monkeypatch.setattr(run_dir, "fcntl", None)  # a file system without flock
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    lock = tmp_path / run_dir.LOCK_NAME
    for holder, busy in ((int(gone), False), (os.getppid(), True)):
        lock.write_text(json.dumps({"pid": holder, "host": socket.gethostname()}))
        if busy:
            with pytest.raises(RunDirError, match=f"process {holder}"):
                claim(tmp_path).__enter__()
        else:
            with claim(tmp_path):  # a dead holder's lock is taken over
                assert json.loads(lock.read_text())["pid"] == os.getpid()
    lock.write_text(json.dumps({"pid": 1, "host": "another-machine"}))  # cannot check: busy
    with pytest.raises(RunDirError, match="another-machine"):
        claim(tmp_path).__enter__()


# ------------------------------------------------- class 3: text, pipes, environments
UNDECODABLE = b"the \xff dog".decode("utf-8", "surrogateescape")  # as Python reads argv


@pytest.mark.parametrize("command,run", [("generate", "lm"), ("generate", "lmbpe"),
                                         ("translate", "translator"), ("classify", "classifier")])
def test_undecodable_bytes_on_stdin_and_in_arguments(runs, monkeypatch, command, run):
    """Issue: bytes that are not UTF-8 on stdin crashed several commands; BPE in any locale."""
    model = ["--model", str(runs[run] / "best.npz")]
    for args, stdin in (([], b"the \xff dog\n"), ([UNDECODABLE], b"")):
        with strict_streams(monkeypatch, stdin) as written:
            assert main([command, *model, *args]) == 0
            if command != "translate":  # the text is echoed back byte for byte
                assert b"the \xff dog" in written()


def test_undecodable_bytes_end_to_end(runs):
    """The same through a real start-up under a strict UTF-8 locale."""
    r = cli(["generate", "--model", str(runs["lmbpe"] / "best.npz")], stdin=b"the \xff dog\n",
            env=STRICT)
    assert r.returncode == 0 and r.stdout.startswith(b"the \xff dog"), r.stderr.decode()


def test_undecodable_file_and_directory_names(runs, tmp_path, monkeypatch):
    folder = os.fsdecode(os.fsencode(tmp_path) + b"/d\xe9j\xe0")  # Latin-1 bytes in a name
    with strict_streams(monkeypatch) as written:
        assert main(["data", "--task", "copy", "--split", "test", "--out-dir", folder]) == 0
        assert b"d\xe9j\xe0/copy.test.tsv" in written()
        scores = tmp_path / "scores.json"  # the file name lands in the JSON as an escape
        assert main(["eval", "--model", str(runs["translator"] / "best.npz"), "--data",
                     f"{folder}/copy.test.tsv", "--limit", "2", "--json", str(scores)]) == 0
    assert json.loads(scores.read_text())["data"].endswith("d\udce9j\udce0/copy.test.tsv")


def test_a_closed_pipe_ends_quietly(runs):
    """Issue: `npformer ... | head -1` ended in BrokenPipeError."""
    args = ["generate", "--n", "50", "the", "--model", str(runs["lm"] / "best.npz")]
    proc = subprocess.Popen([sys.executable, "-m", "npformer", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err


@pytest.mark.parametrize("run,holds", [("lm", "language model"), ("classifier", "classifier")])
def test_attention_of_a_model_without_cross_attention_is_one_line(runs, capsys, run, holds):
    """Issue: `attention` with an LM or a classifier ended in AttributeError."""
    code = main(["attention", "the dog", "--model", str(runs[run] / "best.npz")])
    one_line(code, capsys.readouterr().err, f"holds a {holds}, not a translator")


KERNEL_CALL = ("import numpy as np; from npformer.nn.kernels import activation_nb; "
               "print(activation_nb.relu_forward(np.ones((2, 3), np.float32)).sum())")
NO_JIT = pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"),
                            reason="with NUMBA_DISABLE_JIT nothing is compiled or cached")


@NO_JIT
def test_a_read_only_numba_cache_falls_back_to_a_writable_one(tmp_path):
    """Issue: a read-only home or Numba cache directory made the package die at import."""
    package = tmp_path / "site"
    shutil.copytree(REPO / "npformer", package / "npformer",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (package / "npformer" / "nn" / "kernels" / "__pycache__").write_text("not a directory")
    home = tmp_path / "home"
    home.write_text("a file: nothing below it can be written")
    env = {**os.environ, "PYTHONPATH": str(package), "HOME": str(home), "TMPDIR": str(tmp_path)}
    for name in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME"):
        env.pop(name, None)
    r = subprocess.run([sys.executable, "-c", KERNEL_CALL], capture_output=True, text=True,
                       env=env, timeout=300, cwd=tmp_path)  # (not the checkout's npformer)
    assert r.returncode == 0 and r.stdout.strip() == "6.0" and not r.stderr, r.stderr
    assert list((tmp_path / f"npformer-numba-cache-{os.getuid()}").rglob("*.nbi"))


@NO_JIT
def test_with_no_writable_cache_at_all_caching_is_off_with_a_note(tmp_path):
    (tmp_path / "kern.py").write_text(textwrap.dedent("""
        from numba import njit
        @njit(cache=True)
        def twice(x):
            return 2 * x
    """))
    code = ("import sys; from npformer.nn.kernels import numba_cache as m; "
            "m._writable = lambda path: False; m.ensure_writable_cache(); "
            f"sys.path.insert(0, {str(tmp_path)!r}); import kern; print(kern.twice(21))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "42", r.stderr
    assert r.stderr.count("\n") == 1 and "compiled at every start" in r.stderr
    assert not list(tmp_path.rglob("*.nbi"))


@pytest.mark.parametrize("env", [{"PMI_RANK": "3"},
                                 {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "1"}])
def test_a_stale_mpi_rank_variable_does_not_silence_errors(tmp_path, capsys, monkeypatch, env):
    """Issue: a rank variable left in the environment made every user error silent."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["generate", "--model", str(tmp_path / "none.npz"), "x"])
    one_line(code, capsys.readouterr().err, "no such checkpoint file")


def test_the_launchers_pair_of_variables_decides_the_rank(monkeypatch):
    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PMI_RANK", "3")
    assert launcher_env() == (1, 0)  # a rank without a size: not a launcher's
    monkeypatch.setenv("PMI_SIZE", "4")
    assert launcher_env() == (4, 3)


def test_errors_inside_a_sweep_are_one_line(tmp_path, capsys, monkeypatch):
    """Issue: errors raised inside a sweep escaped as tracebacks."""
    args = ["sweep", "--out", str(tmp_path / "s.json")]
    # a budget that pays for more text than a generated corpus may hold (its data_size cap)
    one_line(main([*args, "--budget", "1e16:16x1"]), capsys.readouterr().err, "data_size")

    def no_data(*a, **k):
        raise DataError("toy: too small to split")
    monkeypatch.setattr(npformer.tools.sweep, "run_one", no_data)
    one_line(main([*args, "--budget", "1e8:16x1"]), capsys.readouterr().err,
             "too small to split")


PROFILE = ["profile", "--d-model", "8", "--n-heads", "2", "--d-ff", "16", "--n-layers", "1",
           "--vocab-size", "20", "--batch", "2", "--src-len", "4", "--tgt-len", "4",
           "--steps", "1"]


def test_errors_after_a_profiling_run_are_one_line(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = main([*PROFILE, "--plot", str(blocker / "p.png")])
    captured = capsys.readouterr()
    one_line(code, captured.err, "--plot")
    assert captured.out == ""  # refused before any timing

    def disk_full(rows, path):
        raise OSError(28, "No space left on device", str(path))
    monkeypatch.setattr(npformer.tools.profile, "plot_profile", disk_full)
    code = main([*PROFILE, "--plot", str(tmp_path / "p.png")])
    captured = capsys.readouterr()
    one_line(code, captured.err, "p.png: No space left on device")
    assert "optimizer" in captured.out  # the table came first


def last_line(code, err, needle):
    """A training run that stops: its progress lines, then one line saying why, exit 1."""
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("npformer train: ") and needle in err, err


class FullDisk:
    """A log file whose writes fail after `ok` of them, as on a full disk."""

    def __init__(self, f, ok):
        self.f, self.ok = f, ok

    def write(self, text):
        self.ok -= 1
        if self.ok < 0:
            raise OSError(28, "No space left on device")
        return self.f.write(text)

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_a_full_disk_while_logging_stops_the_run_with_one_line(tmp_path, capsys, monkeypatch):
    """Issue: writing log.jsonl on a full disk was a traceback."""
    monkeypatch.setattr(npformer.training.session, "open",
                        lambda *a, **k: FullDisk(open(*a, **k), ok=1), raising=False)
    out = tmp_path / "run"
    code = main(["train", "--data", "copy", *FLAGS, "--max-steps", "4", "--out-dir", str(out)])
    last_line(code, capsys.readouterr().err, "log.jsonl: could not write the log (No space "
                                             "left on device)")
    monkeypatch.undo()
    # the neighbour: the log rewritten at the start of a resumed run
    assert main(["train", "--data", "copy", *FLAGS, "--out-dir", str(tmp_path / "b")]) == 0
    capsys.readouterr()

    def no_space(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(npformer.training.session.os, "replace", no_space)
    code = main(["train", "--resume", "--max-steps", "3", "--out-dir", str(tmp_path / "b")])
    last_line(code, capsys.readouterr().err, "could not write the log")


def test_out_of_memory_names_the_file_and_only_the_flags_the_command_has(runs, capsys,
                                                                       monkeypatch):
    def too_big(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr(npformer.training.checkpoint, "load_checkpoint", too_big)
    model = str(runs["lm"] / "best.npz")
    one_line(main(["generate", "--model", model, "x"]), capsys.readouterr().err,
             f"out of memory (with --model {model})")
    monkeypatch.setattr(npformer.training.loop, "train", too_big)
    code = main(["pretrain", "--out-dir", "nowhere"])
    err = capsys.readouterr().err
    one_line(code, err, "--d-model, --d-ff, --n-layers, --max-tokens, --vocab-size")
    code = main(["eval", "--model", model])
    assert "--d-model" not in capsys.readouterr().err


# ------------------------------------------------------------------ class 4: hangs
def test_a_named_pipe_as_training_data_is_refused_not_waited_for(runs, tmp_path, capsys):
    """Issue: a FIFO as --data was read by the fingerprint, then opened again: a hang."""
    fifo = tmp_path / "pairs.tsv"
    os.mkfifo(fifo)
    r = cli(["train", "--data", str(fifo), "--out-dir", str(tmp_path / "run")], timeout=60)
    one_line(r.returncode, r.stderr, "not a regular file")
    with deadline(60):
        code = main(["generate", "--model", str(fifo), "x"])  # a checkpoint alike
        one_line(code, capsys.readouterr().err, "not a regular file")
        code = main(["eval", "--model", str(runs["translator"] / "best.npz"), "--data",
                     "/dev/zero"])  # a device that never ends
        one_line(code, capsys.readouterr().err, "a device")


def test_eval_reads_a_named_pipe_once(runs, tmp_path, capsys):
    fifo = tmp_path / "pairs.tsv"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "w") as writer:  # opens once the reader has
            writer.write("a b\ta b\nc d\tc d\n")
    threading.Thread(target=write, daemon=True).start()
    with deadline(60):
        assert main(["eval", "--model", str(runs["translator"] / "best.npz"), "--data",
                     str(fifo)]) == 0
    assert "sentences      2" in capsys.readouterr().out


# -------------------------------------------------------- class 6: wrong answers
@pytest.mark.parametrize("temperature", ["1e-40", "1e-320"])
def test_a_tiny_temperature_gives_the_greedy_continuation(runs, capsys, temperature):
    """Issue: --temperature 1e-40 overflowed float32, gave NaN and an empty continuation."""
    model = str(runs["lm"] / "best.npz")
    assert main(["generate", "--model", model, "--max-new-tokens", "8", "the dog"]) == 0
    greedy = capsys.readouterr().out
    assert main(["generate", "--model", model, "--max-new-tokens", "8", "--temperature",
                 temperature, "the dog"]) == 0
    assert capsys.readouterr().out == greedy and greedy.strip() != "the dog"
    model = str(runs["translator"] / "best.npz")  # the neighbour: translate --sample
    assert main(["translate", "--model", model, "a b c"]) == 0
    greedy = capsys.readouterr().out
    assert main(["translate", "--model", model, "--sample", "--temperature", temperature,
                 "a b c"]) == 0
    assert capsys.readouterr().out == greedy


def test_tempered_logits_never_overflow():
    logits = np.array([[3.0, -2.0, 5.0, -np.inf], [1.0, 1.0, 0.5, 0.0]], np.float32)
    for t in (1e-320, 1e-40, 1.0, 100.0):
        z = tempered(logits, t)
        assert not np.isnan(z).any() and (z.max(axis=-1) == 0).all()
    tokens = draw_tokens(tempered(logits[:1], 1e-40), np.random.default_rng(0))
    assert tokens.tolist() == [2]


@pytest.mark.parametrize("flags,with_lm,needle", [
    (["--freeze-body", "true", "--scratch", "true"], True, "freeze_body"),
    (["--freeze-body", "true"], False, "freeze_body"),
    (["--scratch", "true"], False, "scratch"),
])
def test_a_frozen_random_body_is_refused(runs, tmp_path, capsys, flags, with_lm, needle):
    """Issue: --freeze-body --scratch trained a head on a frozen random body."""
    start = ["--from", str(runs["lm"] / "best.npz")] if with_lm else []
    code = main(["finetune", *flags, *start, "--out-dir", str(tmp_path / "ft")])
    one_line(code, capsys.readouterr().err, needle)


def test_from_refuses_contradicting_flags_and_saves_what_it_built(runs, tmp_path, capsys):
    """Issue: with --from, explicit model flags were replaced but saved as given."""
    lm = str(runs["lm"] / "best.npz")
    for flags, needle in ((["--max-len", "32"], "--max-len 32 (the LM has 16)"),
                          (["--tokenizer", "bpe"], "--tokenizer bpe (the LM has word)"),
                          (["--vocab-size", "500"], "--vocab-size 500 (the LM has")):
        code = main(["finetune", "--from", lm, *flags, "--out-dir", str(tmp_path / "ft")])
        one_line(code, capsys.readouterr().err, needle)
    ckpt = load_checkpoint(runs["classifier"] / "best.npz")  # started with the preset's sizes
    saved, model = ckpt.train_config, ckpt.model.config
    assert (saved["d_model"], saved["max_len"], saved["n_layers"]) == \
        (model.d_model, model.max_len, model.n_decoder_layers) == (16, 16, 1)
