"""Property-based tests: no input a user controls gives a traceback, a hang or a memory blow-up.

Generated corpora go to the loaders and the tokenizers, generated flag combinations
to the command line, mutated checkpoint files (truncated, bytes flipped, entries
removed / added / retyped, metadata fields changed) to the checkpoint loader and to
the commands that read checkpoints. Each must either work or fail with the
project's own one-line error (exit code 2 on the command line); any other
exception is a bug. Deadlines catch hangs; tracemalloc bounds the memory a
mutated checkpoint can make the loader allocate.
"""
import contextlib
import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npformer.batching import encode_pairs
from npformer.checkpoint import CheckpointError, load_checkpoint
from npformer.cli import UsageError, build_parser, main, train_config_from_args
from npformer.config import ConfigError, TrainConfig
from npformer.data import DataError, load_parallel, load_tsv
from npformer.tokenizers import make_tokenizers
from npformer.train import train

FUZZ = settings(max_examples=60, deadline=2000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
SMALL = dict(data="copy", d_model=16, n_heads=2, d_ff=32, n_layers=1, max_len=12,
             max_tokens=128, max_steps=2, eval_every=2, eval_sentences=3, log_every=1,
             max_minutes=0.0, warmup_steps=1)
LOAD_MEMORY_BOUND = 16 << 20  # bytes the loader may allocate for a ~30 kB checkpoint


def run_main(argv, stdin=""):
    """main(argv) in-process: (exit code, stdout, stderr); argparse exits become codes."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        import sys
        old_stdin, sys.stdin = sys.stdin, io.StringIO(stdin)
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        finally:
            sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


def assert_clean(code, err, argv):
    assert code in (0, 2), f"{argv}: exit {code}\n{err}"
    if code == 2:
        assert len(err.strip().splitlines()) == 1, f"{argv}: not one line:\n{err}"
        assert "error" in err, f"{argv}: {err}"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz") / "run"
    train(TrainConfig(**SMALL, out_dir=str(out)), log=lambda line: None)
    return out


# ------------------------------------------------------------------------ corpora
line_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@FUZZ
@given(lines=st.lists(line_text, max_size=30), junk=st.binary(max_size=20),
       kind=st.sampled_from(["word", "char", "bpe"]))
def test_generated_corpora_load_or_fail_cleanly(tmp_path, lines, junk, kind):
    tsv = tmp_path / "c.tsv"
    tsv.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + junk)
    try:
        pairs = load_tsv(tsv).pairs
    except DataError as err:
        assert str(tsv) in str(err)
        return
    src, tgt = tmp_path / "s.txt", tmp_path / "t.txt"
    src.write_text("\n".join(s for s, _ in pairs), encoding="utf-8")
    tgt.write_text("\n".join(t for _, t in pairs), encoding="utf-8")
    assert load_parallel(src, tgt).pairs == pairs  # the same pairs by the other route
    if pairs:
        vocab = 300 if kind == "bpe" else None
        src_tok, tgt_tok = make_tokenizers([s for s, _ in pairs], [t for _, t in pairs],
                                           kind=kind, vocab_size=vocab)
        examples, dropped = encode_pairs(pairs, src_tok, tgt_tok, max_len=64)
        assert len(examples) + dropped == len(pairs)


@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(st.text("abc xyz", min_size=1, max_size=12),
                                st.text("abc xyz", min_size=1, max_size=12)),
                      max_size=40))
def test_training_on_generated_corpora_works_or_says_why(tmp_path, pairs):
    data = tmp_path / "g.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    argv = ["train", "--data", str(data), "--valid-frac", "0.2", "--test-frac", "0.1",
            *[f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items() if k != "data"],
            "--out-dir", str(tmp_path / "run")]
    code, out, err = run_main(argv)
    assert code in (0, 2), err
    if code:
        assert err.strip().splitlines()[-1].startswith("npformer train: error: "), err


# ----------------------------------------------------------------------- flags
def flag_values():
    return st.one_of(st.integers(-3, 3).map(str), st.sampled_from(
        ["0", "1", "-1", "1e9", "nan", "inf", "-inf", "0.5", "1.0", "", "abc", "true", "no",
         "2147483648", "1e-300", "toy", "bpe", "pre", "gelu", "warmup_cosine"]))


TRAIN_FIELDS = [f for f in TrainConfig.__dataclass_fields__ if f not in ("out_dir", "data",
                                                                           "tgt_file")]


@FUZZ
@given(flags=st.dictionaries(st.sampled_from(TRAIN_FIELDS), flag_values(), max_size=6),
       preset=st.sampled_from([None, "toy", "copy", "tsv"]))
def test_generated_train_flags_give_a_config_or_one_line(flags, preset):
    argv = ["train"] + (["--preset", preset] if preset else [])
    for name, value in flags.items():
        argv.append(f"--{name.replace('_', '-')}={value}")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:
            assert exit_.code == 2
            assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
            return
    try:
        cfg = train_config_from_args(args)
    except (ConfigError, UsageError) as error:
        assert "\n" not in str(error)
        return
    assert isinstance(cfg, TrainConfig)


@FUZZ
@given(command=st.sampled_from(["translate", "eval", "data", "attention"]),
       flags=st.dictionaries(st.sampled_from(
           ["--beam", "--length-penalty", "--temperature", "--top-k", "--top-p", "--seed",
            "--limit", "--show", "--split", "--task", "--threads"]), flag_values(), max_size=4),
       sample=st.booleans())
def test_generated_flags_of_other_commands_never_raise(run_dir, tmp_path, command, flags,
                                                       sample):
    argv = [command]
    for name, value in flags.items():
        if name == "--beam" and value.lstrip("-").isdigit() and int(value) > 4:
            value = "4"  # a wide beam is valid but slow; its bounds are tested below
        argv.append(f"{name}={value}")
    if command in ("translate", "eval", "attention"):
        argv += ["--model", str(run_dir / "best.npz")]
    if command == "translate":
        argv += (["--sample"] if sample else []) + ["a b c"]
    if command == "eval":
        argv += ["--limit", "3"]
    if command == "attention":
        argv += ["a b", "--out-dir", str(tmp_path / "att")]
    if command == "data":
        argv += ["--out-dir", str(tmp_path / "d")]
    code, _, err = run_main(argv)
    assert_clean(code, err, argv)


@pytest.mark.parametrize("argv,needle", [
    (["translate", "--beam", "1001", "x"], "--beam"),
    (["translate", "--top-p", "0", "x"], "--top-p"),
    (["translate", "--temperature", "nan", "x"], "--temperature"),
    (["eval", "--limit", "-1"], "--limit"),
    (["train", "--lr", "inf"], "lr=inf"),
    (["train", "--max-minutes", "nan"], "max_minutes=nan"),
    (["train", "--dropout", "1"], "dropout"),
    (["train", "--vocab-size", "4"], "vocab_size"),
])
def test_values_without_meaning_are_refused_at_parse_or_config_time(argv, needle):
    code, _, err = run_main(argv)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------ checkpoints
def _entries(path):
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _write(path, entries):
    np.savez(path, **entries)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2, 10 ** 12),
                      st.floats(allow_nan=True), st.text(max_size=8),
                      st.lists(st.integers(), max_size=3))


@st.composite
def mutations(draw):
    kind = draw(st.sampled_from(["truncate", "flip", "remove", "add", "retype", "meta",
                                 "reshape"]))
    return kind, draw(st.integers(0, 10 ** 9)), draw(json_leaf), draw(st.integers(1, 8))


def mutate(source, target, mutation):
    kind, r, leaf, n = mutation
    raw = source.read_bytes()
    if kind == "truncate":
        target.write_bytes(raw[: r % len(raw)])
        return
    if kind == "flip":
        data = bytearray(raw)
        for i in range(n):
            data[(r * (i + 1) * 7919) % len(data)] ^= 1 << (i % 8)
        target.write_bytes(bytes(data))
        return
    entries = _entries(source)
    names = sorted(entries)
    name = names[r % len(names)]
    if kind == "remove":
        del entries[name]
    elif kind == "add":
        entries[f"param/extra{r % 5}"] = np.zeros(r % 7, np.float32)
    elif kind == "retype":
        entries[name] = entries[name].astype([np.float64, np.int8, np.float16, np.bool_][n % 4])
    elif kind == "reshape":
        entries[name] = entries[name].reshape(-1)[: max(entries[name].size - 1, 0)]
    else:  # change one metadata field, anywhere in the JSON tree
        meta = json.loads(entries["meta"].tobytes())
        node, keys = meta, []
        while isinstance(node, dict) and node:
            key = sorted(node)[(r // (len(keys) + 1)) % len(node)]
            keys.append(key)
            if not isinstance(node[key], dict) or r % (len(keys) + 2) == 0:
                node[key] = leaf
                break
            node = node[key]
        entries["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    _write(target, entries)


@FUZZ
@given(mutation=mutations())
def test_mutated_checkpoints_load_or_fail_with_one_line(run_dir, tmp_path, mutation):
    bad = tmp_path / "bad.npz"
    mutate(run_dir / "last.npz", bad, mutation)
    tracemalloc.start()
    try:
        try:
            load_checkpoint(bad)
        except CheckpointError as err:
            assert "\n" not in str(err) and str(bad) in str(err)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < LOAD_MEMORY_BOUND, f"{mutation}: loading allocated {peak} bytes"
    code, _, err = run_main(["translate", "--model", str(bad), "a b"])
    assert_clean(code, err, mutation)


def test_a_header_claiming_a_huge_array_is_refused_before_allocating(run_dir, tmp_path):
    entries = _entries(run_dir / "last.npz")
    bad = tmp_path / "huge.npz"
    _write(bad, entries)
    with zipfile.ZipFile(bad) as zf:
        first = next(i for i in zf.infolist() if i.filename.startswith("param/"))
        raw = zf.read(first)
    header_end = raw.index(b"\n") + 1
    header = raw[:header_end].decode("latin1")
    start, stop = header.index("'shape': (") + 10, header.index(")", header.index("'shape'"))
    huge = header[:start] + "100000, 100000, 1000" + header[stop:]
    huge = huge[:-1].ljust(len(header) - 1)[: len(header) - 1] + "\n"
    data = bytearray(bad.read_bytes())
    at = data.index(raw[:header_end])
    data[at: at + header_end] = huge.encode("latin1")
    bad.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError):
            load_checkpoint(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < LOAD_MEMORY_BOUND


@pytest.mark.parametrize("field,value,needle", [
    ("d_model", 1 << 30, "d_model"),
    ("max_len", 1 << 40, "max_len"),
    ("src_vocab_size", -3, "src_vocab_size"),
    ("dropout", "0.1", "dropout"),
])
def test_model_config_fields_in_a_checkpoint_are_checked(run_dir, tmp_path, field, value, needle):
    entries = _entries(run_dir / "last.npz")
    meta = json.loads(entries["meta"].tobytes())
    meta["model_config"][field] = value
    entries["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    bad = tmp_path / "bad.npz"
    _write(bad, entries)
    with pytest.raises(CheckpointError, match=needle):
        load_checkpoint(bad)


def test_tokenizer_that_does_not_fit_the_model_is_refused(run_dir, tmp_path):
    entries = _entries(run_dir / "last.npz")
    meta = json.loads(entries["meta"].tobytes())
    meta["tgt_tokenizer"] = meta["src_tokenizer"] | {"pieces": meta["src_tokenizer"]["pieces"][:6]}
    entries["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    bad = tmp_path / "bad.npz"
    _write(bad, entries)
    with pytest.raises(CheckpointError, match="tokenizer"):
        load_checkpoint(bad)
