"""The translator on a real corpus: Multi30k German -> English (run by hand).

Uses ../shared/data/multi30k (29k training pairs; never copied into the repo)
when present. It writes the pairs to a TSV in a temporary directory, the way a
user would bring their own data, then runs

    npformer train --preset tsv --data <train+valid+test>.tsv --max-minutes 10

and reports what the issue asks for: BPE training time, training tokens/s, and
sample translations plus BLEU after ten minutes.

    python benchmarks/real_corpus.py [--minutes 10] [--data-dir PATH] [extra train flags]
"""
import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"


def read_pairs(data_dir, split):
    src = (data_dir / f"{split}.de").read_text(encoding="utf-8").split("\n")
    tgt = (data_dir / f"{split}.en").read_text(encoding="utf-8").split("\n")
    return [(s.strip(), t.strip()) for s, t in zip(src, tgt) if s.strip() and t.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    args, extra = ap.parse_known_args()
    if not (args.data_dir / "train.de").exists():
        print(f"no Multi30k at {args.data_dir}; nothing to do")
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from npformer.tokenizers import BPETokenizer

    train = read_pairs(args.data_dir, "train")
    t0 = time.perf_counter()
    BPETokenizer.train([s for s, _ in train] + [t for _, t in train], vocab_size=8000)
    bpe_seconds = time.perf_counter() - t0
    print(f"BPE (shared, vocab 8000) on {len(train)} pairs: {bpe_seconds:.1f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tsv = Path(tmp) / "multi30k.de-en.tsv"
        pairs = train + read_pairs(args.data_dir, "val") + read_pairs(args.data_dir, "test")
        tsv.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "npformer", "train", "--preset", "tsv", "--data", str(tsv),
               "--max-minutes", str(args.minutes), "--out-dir", str(out), *extra]
        print("running:", " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        print(result.stderr[-4000:])
        print(result.stdout)
        log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    speeds = [h["tokens_per_s"] for h in log if h["type"] == "train"]
    if speeds:
        speeds.sort()
        print(f"training target tokens/s: median {speeds[len(speeds) // 2]:,.0f} "
              f"(min {speeds[0]:,.0f}, max {speeds[-1]:,.0f}); total wall {wall:.0f} s")
    match = re.search(r"BLEU ([\d.]+)", result.stdout)
    print(f"test BLEU after {args.minutes:g} minutes: {match.group(1) if match else '?'}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
