"""The translator on a real corpus: Multi30k German -> English, scored on test2016 (run by hand).

Uses ../shared/data/multi30k (never copied into the repo) when present. It writes
train + val (30,014 pairs) to a TSV, the way a user brings their own data, runs the
plain preset for N minutes

    npformer train --preset tsv --data multi30k.train+val.tsv --max-minutes 10

(which holds out its usual 2% + 2% of those pairs for validation and its own test
split), and then scores the best checkpoint on the official test set, test2016
(1,000 pairs, never seen in training), the way published results on this set are
scored:

  - lowercased word-level BLEU: hypotheses and references lowercased, split into
    words with the 13a tokenizer (npformer.tasks.metrics), corpus BLEU;
  - cased BLEU: npformer's default, equal to sacrebleu's (13a, cased);
  - exact match;

greedy, and with --beam K also beam search. It reports the pairs used and left
out, BPE tokens per word on each side, steps, training tokens/s, the load average,
validation BLEU / exact match over time (from the run's log.jsonl), and with
--plot a picture of the curves (other runs' curves can be drawn beside it with
--compare DIR=LABEL, e.g. the runs of a tuning sweep).

    python benchmarks/real_corpus.py [--minutes 10] [--data-dir PATH] [--out-dir DIR]
        [--beam 4] [--plot curve.png] [--json result.json] [--compare DIR=LABEL ...]
        [extra npformer train flags, e.g. --lr 3e-3]

With --score-only the training is skipped and the run in --out-dir is scored.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import blas_env  # noqa: E402  (the BLAS kernel; the two columns)

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"


def read_pairs(data_dir, split):
    """The (German, English) pairs of one split; blank lines (the trailing one) skipped."""
    src = (data_dir / f"{split}.de").read_text(encoding="utf-8").split("\n")
    tgt = (data_dir / f"{split}.en").read_text(encoding="utf-8").split("\n")
    return [(s.strip(), t.strip()) for s, t in zip(src, tgt) if s.strip() and t.strip()]


def write_tsv(path, pairs):
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")


def score(hyps, refs):
    """Cased 13a BLEU (sacrebleu's default), lowercased word BLEU and exact match."""
    from npformer.tasks.metrics import corpus_bleu, exact_match

    return {"bleu_cased": corpus_bleu(hyps, refs).score,
            "bleu_lower": corpus_bleu([h.lower() for h in hyps], [r.lower() for r in refs]).score,
            "exact_match": exact_match(hyps, refs)}


def data_report(ckpt):
    """Pairs used vs left out and BPE tokens per word, from the run's own split."""
    from npformer.training.batching import encode_pairs
    from npformer.training.config import TrainConfig
    from npformer.tasks import TASKS

    cfg = TrainConfig.from_dict(ckpt.train_config)
    splits, _ = TASKS["translate"].load(cfg)
    examples, too_long = encode_pairs(splits["train"], ckpt.src_tokenizer, ckpt.tgt_tokenizer,
                                      cfg.max_len)
    words_src = sum(len(s.split()) for s, _ in splits["train"])
    words_tgt = sum(len(t.split()) for _, t in splits["train"])
    toks_src = sum(len(ckpt.src_tokenizer.encode(s)) for s, _ in splits["train"])
    toks_tgt = sum(len(ckpt.tgt_tokenizer.encode(t)) for _, t in splits["train"])
    return {"pairs_trained_on": len(examples), "left_out_too_long": too_long,
            "held_out_valid": len(splits["valid"]), "held_out_test": len(splits["test"]),
            "max_len": cfg.max_len, "vocab_size": ckpt.tgt_tokenizer.vocab_size,
            "tokens_per_word_src": toks_src / words_src, "tokens_per_word_tgt": toks_tgt / words_tgt}


def curve(history):
    """Validation records with the training-clock minute of each (from the train records)."""
    train = [h for h in history if h["type"] == "train"]
    rows = []
    for v in (h for h in history if h["type"] == "valid"):
        before = [h for h in train if h["step"] <= v["step"]]
        minutes = before[-1]["elapsed_s"] / 60 if before else 0.0
        rows.append({"step": v["step"], "minutes": minutes, "bleu": v["bleu"],
                     "exact_match": v["exact_match"], "valid_loss": v["valid_loss"]})
    return rows


def read_log(run_dir):
    lines = (Path(run_dir) / "log.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def plot_curves(runs, path):
    """Validation BLEU against minutes and steps, and training loss, one line per run."""
    from npformer.tools.plots import _plt

    plt = _plt()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.8))
    for label, history in runs.items():
        rows = curve(history)
        train = [h for h in history if h["type"] == "train"]
        ax1.plot([r["minutes"] for r in rows], [r["bleu"] for r in rows], "o-", label=label)
        ax2.plot([r["step"] for r in rows], [r["bleu"] for r in rows], "o-", label=label)
        ax3.plot([h["step"] for h in train], [h["window_loss"] for h in train], label=label)
    ax1.set_xlabel("training minutes")
    ax1.set_ylabel("validation BLEU (600 held-out pairs' first 200)")
    ax2.set_xlabel("step")
    ax2.set_ylabel("validation BLEU")
    ax3.set_xlabel("step")
    ax3.set_ylabel("training loss (smoothed labels)")
    ax3.set_ylim(top=6)
    for ax, title in ((ax1, "BLEU over time"), (ax2, "BLEU per step"), (ax3, "training loss")):
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--out-dir", type=Path, help="keep the run here (default: a temp dir)")
    ap.add_argument("--beam", type=int, default=0, help="also score beam search of this width")
    ap.add_argument("--plot", type=Path, help="save the curves to this PNG")
    ap.add_argument("--json", type=Path, help="save the numbers to this JSON file")
    ap.add_argument("--compare", nargs="*", default=[], metavar="DIR=LABEL",
                    help="other runs to draw in the plot")
    ap.add_argument("--label", default="this run", help="this run's name in the plot")
    ap.add_argument("--score-only", action="store_true", help="score the run in --out-dir")
    blas_env.add_arguments(ap, default=blas_env.AS_GIVEN)
    args, extra = ap.parse_known_args()
    if blas_env.dispatch(args, __file__):
        return 0
    print(blas_env.kernel_report(threads=1) + " (npformer train's default: 1 thread)", flush=True)
    if not (args.data_dir / "train.de").exists():
        print(f"no Multi30k at {args.data_dir}; nothing to do")
        return 0
    from npformer.training.checkpoint import load_checkpoint
    from npformer.tasks.evaluation import translate_texts

    tmp = tempfile.TemporaryDirectory()
    out = args.out_dir or Path(tmp.name) / "run"
    train, valid, test = (read_pairs(args.data_dir, s) for s in ("train", "val", "test"))
    load_before = os.getloadavg()
    wall = None
    if not args.score_only:
        tsv = Path(tmp.name) / "multi30k.train+val.tsv"
        write_tsv(tsv, train + valid)
        cmd = [sys.executable, "-m", "npformer", "train", "--preset", "tsv", "--data", str(tsv),
               "--max-minutes", str(args.minutes), "--out-dir", str(out), *extra]
        print(f"load average before: {load_before[0]:.2f}\nrunning: {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        done = subprocess.run(cmd)
        wall = time.perf_counter() - t0
        if done.returncode:
            return done.returncode
    load_after = os.getloadavg()

    history = read_log(out)
    ckpt = load_checkpoint(out / "best.npz")
    report = {"command": "npformer train --preset tsv --data multi30k.train+val.tsv "
                         f"--max-minutes {args.minutes:g} {' '.join(extra)}".strip(),
              "pairs_given": len(train) + len(valid), **data_report(ckpt),
              "load_average_before": load_before[0], "load_average_after": load_after,
              "wall_s": wall}
    train_rows = [h for h in history if h["type"] == "train"]
    speeds = sorted(h["tokens_per_s"] for h in train_rows)
    report.update(steps=max((h["step"] for h in history), default=0),
                  best_step=ckpt.state.get("step"),
                  tokens_per_s_median=speeds[len(speeds) // 2] if speeds else 0.0,
                  curve=curve(history))

    sources, refs = [s for s, _ in test], [t for _, t in test]
    decodings = {"greedy": {}} | ({f"beam{args.beam}": {"beam_size": args.beam}}
                                  if args.beam > 1 else {})
    for name, kw in decodings.items():
        t0 = time.perf_counter()
        hyps = translate_texts(ckpt.model, ckpt.src_tokenizer, ckpt.tgt_tokenizer, sources,
                               method="beam" if kw else "greedy", **kw)
        report[f"test2016_{name}"] = {**score(hyps, refs), "seconds": time.perf_counter() - t0,
                                      "samples": [{"source": s, "reference": r, "hypothesis": h}
                                                  for s, r, h in list(zip(sources, refs, hyps))[:3]]}

    print(f"\n=== Multi30k de->en, {args.minutes:g} minutes ===")
    print(f"pairs: {report['pairs_given']} given (train + val); trained on "
          f"{report['pairs_trained_on']}; left out: {report['held_out_valid']} validation, "
          f"{report['held_out_test']} own test split, {report['left_out_too_long']} longer "
          f"than max_len={report['max_len']}")
    print(f"BPE vocabulary {report['vocab_size']} (shared): tokens per word "
          f"{report['tokens_per_word_src']:.2f} (de), {report['tokens_per_word_tgt']:.2f} (en)")
    print(f"steps {report['steps']} (best checkpoint: step {report['best_step']}); "
          f"training tokens/s median {report['tokens_per_s_median']:,.0f}; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} / {load_after[1]:.2f} after (1 / 5 min)")
    print("validation (first 200 of the held-out split):")
    for r in report["curve"]:
        print(f"  {r['minutes']:5.1f} min  step {r['step']:>5}  BLEU {r['bleu']:5.2f}  exact "
              f"{100 * r['exact_match']:4.1f}%  loss {r['valid_loss']:.3f}")
    for name in decodings:
        t = report[f"test2016_{name}"]
        print(f"test2016 ({len(test)} pairs, {name}): BLEU {t['bleu_lower']:.2f} lowercased "
              f"words, {t['bleu_cased']:.2f} cased 13a (sacrebleu); exact match "
              f"{100 * t['exact_match']:.1f}% ({t['seconds']:.0f} s)")
    for s in report["test2016_greedy"]["samples"]:
        print(f"  source:    {s['source']}\n  reference: {s['reference']}\n"
              f"  model:     {s['hypothesis']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    if args.plot:
        runs = {args.label: history}
        for item in args.compare:
            run_dir, _, label = item.partition("=")
            runs[label or run_dir] = read_log(run_dir)
        plot_curves(runs, args.plot)
        print(f"curves: {args.plot}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
