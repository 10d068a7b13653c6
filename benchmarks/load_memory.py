"""Peak memory of loading hostile and honest checkpoints, relative to the file's size.

Usage: python benchmarks/load_memory.py [--keep DIR] [--code CHECKOUT]

--code loads the same files with another checkout's npformer (e.g. one from before
issue 24), to compare.

Makes one checkpoint per case (issue 24's examples and the fuzzer's mutation kinds),
then loads each in a fresh process and reports:
  file      the checkpoint's size
  params    the bytes of the model's parameters its config describes
  peak      the most memory tracemalloc saw during load_checkpoint (Python and NumPy
            allocations, calloc'd pages counted whole)
  rss+      the process's peak resident memory during the load (VmHWM, reset just
            before it) minus its resident memory before it
  ratio     peak / file, and whether peak <= 4 x file + params (issue 24's target)
  result    loaded, or the start of the CheckpointError
Each child runs with an address-space limit of 6 GB, so a case that would ask for
more fails in its own process instead of taking the machine's memory.
Nothing is downloaded; every file is made here (about 60 MB in all).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import numpy as np  # noqa: E402

CHILD = r"""
import json, resource, sys, tracemalloc
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
from npformer.training.checkpoint import CheckpointError, load_checkpoint
path = sys.argv[1]
def status(field):  # kB, from /proc/self/status
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak resident size (VmHWM) to the current one
before = status("VmRSS")
tracemalloc.start()
try:
    ckpt = load_checkpoint(path)
    result = "loaded"
except CheckpointError as err:
    result = "CheckpointError: " + str(err).split(": ", 1)[-1][:70]
except MemoryError:
    result = "MemoryError"
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
after = status("VmHWM")
print(json.dumps({"peak": peak, "rss": max(after - before, 0) * 1024, "result": result}))
"""


def entries(path):
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def with_meta(source, target, change):
    arrays = entries(source)
    meta = json.loads(arrays["meta"].tobytes())
    change(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(target, **arrays)
    return target


def train_runs(root):
    """A tiny translator, a BPE language model and a classifier (a few seconds each)."""
    from npformer.training.config import TrainConfig
    from npformer.training.loop import train

    tiny = dict(d_model=64, n_heads=4, d_ff=128, n_layers=2, max_len=32, max_tokens=512,
                max_steps=2, eval_every=2, eval_sentences=3, log_every=1, max_minutes=0.0,
                warmup_steps=1)
    configs = {"translator": TrainConfig(**tiny, data="copy"),
               "lm": TrainConfig(**tiny, task="lm", data_size=20000, tokenizer="bpe",
                                 vocab_size=2000),
               "classifier": TrainConfig(**tiny, task="classify", data="acceptability",
                                         data_size=200)}
    for name, cfg in configs.items():
        train(cfg.replace(out_dir=str(root / name)), log=lambda line: None, overwrite=True)
    return {name: root / name / "last.npz" for name in configs}


def make_cases(root):
    """{case: checkpoint path}."""
    from npformer.training.checkpoint import save_checkpoint
    from npformer.nn.config import ModelConfig
    from npformer.models import build_model
    from npformer.tokenizers import WordTokenizer
    from npformer.tokenizers.bpe import N_BASE

    runs = train_runs(root)
    cases = {f"honest {name}": path for name, path in runs.items()}

    def self_merges(meta):  # issue: a few bytes more, hundreds of MB at load
        for side in ("src_tokenizer", "tgt_tokenizer"):
            merges = meta[side]["merges"]
            k = len(merges)
            merges[-26:] = [[N_BASE + k - 27 + i] * 2 for i in range(26)]
    cases["26 BPE merges joining a token to itself"] = with_meta(
        runs["lm"], root / "self_merge.npz", self_merges)

    cfg = ModelConfig(src_vocab_size=16, tgt_vocab_size=16, d_model=1024, n_heads=8, d_ff=64,
                      n_encoder_layers=1, n_decoder_layers=1, max_len=32768)
    tok = WordTokenizer([f"w{i}" for i in range(12)])
    cases["d_model 1024, max_len 32768 (position table)"] = save_checkpoint(
        root / "long.npz", build_model(cfg), tok, tok)
    zeros = {k: np.zeros_like(v) for k, v in entries(cases["d_model 1024, max_len 32768 "
                                                          "(position table)"]).items()
             if k != "meta"}
    zeros["meta"] = entries(root / "long.npz")["meta"]
    np.savez_compressed(root / "long_zeros.npz", **zeros)
    cases["the same, compressed zeros"] = root / "long_zeros.npz"

    bomb = entries(runs["translator"])
    bomb.update({f"opt/exp_avg/zeros{i}": np.zeros(1 << 22, np.float32) for i in range(16)})
    np.savez_compressed(root / "bomb.npz", **bomb)
    cases["16 compressed entries of 16 MB zeros"] = root / "bomb.npz"

    cases["3 MB of [] in an ignored field"] = with_meta(
        runs["translator"], root / "junk.npz", lambda m: m.update(junk=[[]] * 1_000_000))
    cases["an ignored key inside state, 3 MB"] = with_meta(
        runs["translator"], root / "junk_state.npz",
        lambda m: m["state"].update(notes=[[]] * 1_000_000))
    records = [{"type": "train", "step": i, "epoch": 0, "loss": 2.0, "window_loss": 2.0,
                "lr": 1e-3, "tokens_per_s": 1000.0, "elapsed_s": 1.0} for i in range(20000)]
    cases["honest log of 20,000 records"] = with_meta(
        runs["translator"], root / "long_log.npz", lambda m: m["state"].update(history=records))
    cases["saved data_size 2**30"] = with_meta(
        runs["lm"], root / "data_size.npz", lambda m: m["train_config"].update(data_size=1 << 30))

    extra = entries(runs["translator"])
    extra["opt/exp_avg/extra"] = np.zeros(1 << 22, np.float32)
    np.savez(root / "extra.npz", **extra)
    cases["an extra 16 MB entry"] = root / "extra.npz"

    dup = root / "duplicate.npz"
    dup.write_bytes(runs["translator"].read_bytes())
    with zipfile.ZipFile(runs["translator"]) as src, zipfile.ZipFile(dup, "a") as zf, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": the point of this case
        name = next(n for n in src.namelist() if n.startswith("param/"))
        zf.writestr(name, src.read(name))
    cases["an entry named twice"] = dup

    raw = runs["translator"].read_bytes()
    (root / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    cases["truncated"] = root / "truncated.npz"
    flipped = bytearray(raw)
    for i in range(8):
        flipped[(i + 1) * 7919 % len(flipped)] ^= 1 << i
    (root / "flipped.npz").write_bytes(bytes(flipped))
    cases["8 bits flipped"] = root / "flipped.npz"
    return cases


def param_bytes(path):
    from npformer.training.checkpoint import read_checkpoint_meta
    from npformer.nn.config import ModelConfig
    from npformer.nn.params import param_specs

    try:
        cfg = ModelConfig.from_dict(read_checkpoint_meta(path)["model_config"])
    except Exception:  # unreadable metadata: no parameters to count
        return 0
    return sum(int(np.prod(s.shape)) for s in param_specs(cfg).values()) * 4


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="keep the checkpoints in this folder")
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout whose loader is measured (default: this one)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp())
    root.mkdir(parents=True, exist_ok=True)
    cases = make_cases(root)
    env = {**os.environ, "PYTHONPATH": str(args.code.resolve())}
    print(f"{'case':<46} {'file':>9} {'params':>9} {'peak':>9} {'rss+':>9} {'peak/file':>9} "
          f"{'<=4f+p':>6}  result")
    for case, path in cases.items():
        out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                             text=True, env=env, cwd=root)
        size, params = path.stat().st_size, param_bytes(path)
        try:
            got = json.loads(out.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            print(f"{case:<46} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        ok = got["peak"] <= 4 * size + params
        print(f"{case:<46} {size / 1e6:>8.2f}M {params / 1e6:>8.2f}M {got['peak'] / 1e6:>8.2f}M "
              f"{got['rss'] / 1e6:>8.1f}M {got['peak'] / size:>9.2f} {'yes' if ok else 'NO':>6}  "
              f"{got['result']}")


if __name__ == "__main__":
    main()
