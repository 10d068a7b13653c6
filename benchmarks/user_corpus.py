"""A new user's own corpus: generated SCAN commands, trained as a user would (run by hand).

Writes the 20,910 SCAN command -> action pairs (npformer/devtools/scan_commands.py, e.g.
"jump twice and walk left" -> "I_JUMP I_JUMP I_TURN_LEFT I_WALK") to a TSV file in a
temporary directory and runs what a new user runs:

    npformer train --preset tsv --data commands.tsv [--max-minutes M] [extra train flags]

It reports what issue #14 asks for: training pairs used and left out, tokens per word
on each side (and, for BPE, what the pre-tokenizer before identifiers and max_len 64
would have left out), steps, tokens/s, validation loss / BLEU / exact match at each
validation, and the test scores of best.npz. With --snapshots it also copies
last.npz after each validation (the run itself is untouched) and scores every copy
on the test split, to show which checkpoint each --best-by rule keeps and how good
it is.

    python benchmarks/user_corpus.py [--minutes M] [--snapshots] [--json FILE] [train flags]
    python benchmarks/user_corpus.py --minutes 5 --eval-every 100 --snapshots
    python benchmarks/user_corpus.py --minutes 5 --eval-every 100 --snapshots --tokenizer word
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import blas_env  # noqa: E402  (the BLAS kernel; the two columns)

from npformer.training.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_meta  # noqa: E402
from npformer.tasks import PRESETS  # noqa: E402
from npformer.training.config import TrainConfig  # noqa: E402
from npformer.devtools.scan_commands import make_command_corpus
from npformer.data import save_tsv  # noqa: E402
from npformer.tasks.evaluation import evaluate  # noqa: E402
from npformer.tasks import TASKS, selection_score  # noqa: E402
from npformer.tokenizers import BPETokenizer  # noqa: E402

OLD_MAX_LEN = 64  # the tsv preset's max_len before it came from the data


def keep_snapshots(last, folder, stop):
    """Copy `last` (last.npz) to folder/step{N}.npz after each validation, until stop is set.

    The trainer replaces last.npz atomically, so a copy is always one whole checkpoint;
    it is named by the step it holds, and kept only if it was saved by a validation.
    """
    seen = None
    while not stop.is_set():
        try:
            stamp = last.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp != seen:
            seen = stamp
            tmp = folder / "copy.tmp.npz"
            try:
                shutil.copyfile(last, tmp)
                state = read_checkpoint_meta(tmp)["state"]
            except (OSError, CheckpointError):
                continue
            if state["validated_step"] == state["step"]:
                os.replace(tmp, folder / f"step{state['step']}.npz")
        stop.wait(0.25)


def old_rule_left_out(train_pairs):
    """Training pairs the preset left out before: GPT-2's pre-tokenizer and max_len 64."""
    texts = [s for s, _ in train_pairs] + [t for _, t in train_pairs]
    tok = BPETokenizer.train(texts, vocab_size=PRESETS["tsv"]["vocab_size"], identifiers=False)
    tokens = {side: sum(len(tok.encode(p[side])) for p in train_pairs) for side in (0, 1)}
    words = {side: sum(len(p[side].split()) for p in train_pairs) for side in (0, 1)}
    left_out = sum(max(len(tok.encode(s)), len(tok.encode(t))) + 1 > OLD_MAX_LEN
                   for s, t in train_pairs)
    return left_out, tokens[0] / words[0], tokens[1] / words[1]


def score_snapshots(folder, test_pairs):
    """{step: (test BLEU, test exact match)} of every kept checkpoint (greedy decoding)."""
    scores = {}
    for path in sorted(folder.glob("step*.npz"), key=lambda p: int(p.stem[4:])):
        ckpt = load_checkpoint(path)
        result = evaluate(ckpt.model, ckpt.src_tokenizer, ckpt.tgt_tokenizer, test_pairs)
        scores[int(path.stem[4:])] = (result["bleu"], result["exact_match"])
    return scores


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=PRESETS["tsv"]["max_minutes"],
                    help="--max-minutes of the run (default: the tsv preset's)")
    ap.add_argument("--snapshots", action="store_true",
                    help="keep last.npz after each validation and score each on the test split")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    blas_env.add_arguments(ap, default=blas_env.AS_GIVEN)
    args, extra = ap.parse_known_args()
    if blas_env.dispatch(args, __file__):
        return
    print(blas_env.kernel_report(threads=1) + " (npformer train's default: 1 thread)", flush=True)
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tsv = tmp / "commands.tsv"
        save_tsv(make_command_corpus(seed=0), tsv)
        out, shots = tmp / "run", tmp / "snapshots"
        shots.mkdir()
        cmd = [sys.executable, "-m", "npformer", "train", "--preset", "tsv", "--data", str(tsv),
               "--max-minutes", f"{args.minutes:g}", "--out-dir", str(out), *extra]
        print("running:", " ".join(cmd), flush=True)
        stop = threading.Event()
        watcher = threading.Thread(target=keep_snapshots, args=(out / "last.npz", shots, stop))
        if args.snapshots:
            watcher.start()
        t0 = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        stop.set()
        if args.snapshots:
            watcher.join()
        print(result.stderr[-3000:])
        if result.returncode:
            print(result.stdout)
            return result.returncode
        load_after = os.getloadavg()
        log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        cfg = TrainConfig.from_dict(load_checkpoint(out / "last.npz").train_config)
        splits, _ = TASKS["translate"].load(cfg)
        snapshot_scores = score_snapshots(shots, splits["test"]) if args.snapshots else {}
        old = old_rule_left_out(splits["train"]) if cfg.tokenizer == "bpe" else None

    data = next(h for h in log if h["type"] == "data")
    train_rows = [h for h in log if h["type"] == "train"]
    valid = [h for h in log if h["type"] == "valid"]
    speeds = sorted(h["tokens_per_s"] for h in train_rows)
    test = re.search(r"test split \((\d+) sentences.*?BLEU ([\d.]+), exact match ([\d.]+)%",
                     result.stdout)
    n = data["pairs_used"] + data["pairs_left_out"]
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min); "
          f"wall {wall:.0f} s")
    print(f"tokenizer {cfg.tokenizer}, max_len {data['max_len']} "
          f"({'from the data' if data['max_len_from_data'] else 'given'}); training pairs "
          f"used {data['pairs_used']:,} of {n:,}, left out {data['pairs_left_out']:,} "
          f"({100 * data['left_out_share']:.2f}%)")
    print(f"tokens per word: source {data['src_tokens_per_word']:.2f}, target "
          f"{data['tgt_tokens_per_word']:.2f}")
    if old:
        print(f"before (GPT-2 pre-tokenizer, max_len {OLD_MAX_LEN}): {old[0]:,} of {n:,} "
              f"training pairs left out ({100 * old[0] / n:.1f}%); tokens per word: source "
              f"{old[1]:.2f}, target {old[2]:.2f}")
    print(f"steps {max(h['step'] for h in log)}; tokens/s median "
          f"{speeds[len(speeds) // 2]:,.0f} (min {speeds[0]:,.0f}, max {speeds[-1]:,.0f})")
    k = cfg.eval_sentences
    print(f"\n| step | min | valid loss | valid BLEU ({k}) | valid exact ({k}) | test BLEU | "
          "test exact |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for h in valid:  # minutes: the elapsed time of the last progress record before it
        before = [row["elapsed_s"] for row in train_rows if row["step"] <= h["step"]]
        minutes = before[-1] / 60 if before else float("nan")
        bleu, exact = snapshot_scores.get(h["step"], (float("nan"), float("nan")))
        print(f"| {h['step']} | {minutes:.1f} | {h['valid_loss']:.4f} | {h['bleu']:.1f} | "
              f"{100 * h['exact_match']:.1f}% | {bleu:.1f} | {100 * exact:.1f}% |")
    picks = {}
    for rule in ("bleu_exact", "bleu", "exact_match", "valid_loss"):
        best = None  # the first validation with the highest score, as the trainer keeps it
        for h in valid:
            if best is None or selection_score(h, rule) > selection_score(best, rule):
                best = h
        picks[rule] = best["step"]
        bleu, exact = snapshot_scores.get(best["step"], (float("nan"), float("nan")))
        print(f"--best-by {rule:<11} keeps step {best['step']}: test BLEU {bleu:.1f}, "
              f"exact match {100 * exact:.1f}%")
    if test:
        print(f"best.npz on the test split ({test.group(1)} sentences): BLEU {test.group(2)}, "
              f"exact match {test.group(3)}%")
    if args.json:
        args.json.write_text(json.dumps({
            "command": cmd[2:], "load_before": load_before, "load_after": load_after,
            "wall_s": wall, "data": data, "old_rule_left_out": old, "valid": valid,
            "tokens_per_s_median": speeds[len(speeds) // 2], "picks": picks,
            "snapshot_scores": snapshot_scores,
            "test": test.groups() if test else None}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
