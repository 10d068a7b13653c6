"""The language-model claims, measured (run by hand, not a test; results: docs/language_models.md).

    python benchmarks/llm.py pretrain        # `npformer pretrain` from a cold start: time,
                                             # perplexity against the entropy floor, samples
    python benchmarks/llm.py finetune        # accuracy vs labelled examples, pretrained vs scratch
    python benchmarks/llm.py translator      # a translator started from the LM vs from scratch
    python benchmarks/llm.py all

pretrain: runs exactly `npformer pretrain` (the default preset) with an empty Numba
cache, so the time includes compiling the kernels, and reports the wall time, the
validation curve, the test perplexity, the entropy floor of the toy text (the best any
model can do, npformer/data/entropy.py) and the share of sampled lines that the toy
grammar accepts (npformer/data/grammar.py), at temperature 1 and 0.7.

finetune: for each number of labelled training examples, fine-tunes the pretrained LM
(`npformer finetune --from`, the head on the text's last token) and trains the same
architecture with the same tokenizer from scratch (`--scratch true`), with the same step
budget, over several seeds (a seed draws the labelled examples, so the two starts and the
bag-of-words baseline of one seed see the same ones); test accuracy, mean and 95%
t-interval over seeds, the paired differences, a table and a plot
(docs/img/finetune_curve.png).

translator: `npformer train` on the toy corpus with the LM's size and tokenizer, from
scratch and from the LM's weights (`--init-from`), same steps; validation BLEU against
the step, a table and a plot (docs/img/translator_from_lm.png).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import blas_env  # noqa: E402  (the BLAS kernel; the two columns)

REPO = Path(__file__).resolve().parents[1]
LM_DIR = REPO / "runs" / "bench_lm"


def npformer(*args, env=None, check=True):
    """Run `python -m npformer ARGS`; returns (stdout, stderr, seconds)."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "npformer", *map(str, args)], capture_output=True,
                       text=True, env=env)
    if check and r.returncode != 0:
        raise SystemExit(f"npformer {' '.join(map(str, args))} failed:\n{r.stderr[-3000:]}")
    return r.stdout, r.stderr, time.perf_counter() - t0


def log_records(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]


def run_pretrain(args):
    from npformer.training.checkpoint import load_checkpoint
    from npformer.tasks import PRESETS
    from npformer.data import entropy_floor, is_grammatical_mixed, text_nll
    from npformer.models.decoding import continue_text
    from npformer.tasks import TASKS
    from npformer.training.config import TrainConfig

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        out, err, seconds = npformer("pretrain", "--out-dir", LM_DIR, "--overwrite", env=env)
    print(f"npformer pretrain, cold Numba cache: {seconds:.0f} s wall time")
    print("\n".join(line for line in err.splitlines() if line.startswith(("valid", "stopped",
                                                                        "data", "vocab"))))
    print(out)
    cfg = TrainConfig(**PRESETS["lm"])
    floor = entropy_floor("mixed", extra_tokens_per_line=1)
    test = TASKS["lm"].load(cfg)[0]["test"]
    own = text_nll(test, "mixed", extra_tokens_per_line=1)
    print(f"entropy floor of the toy text (EOS predicted): {floor['nats_per_token']:.3f} "
          f"nats/token, perplexity {floor['perplexity']:.2f}; the generator's own loss on the "
          f"test lines: {own:.3f} nats/token")
    from npformer.data import make_toy_text
    from npformer.tasks.metrics import distinct_n, self_bleu
    from npformer.tools.stats import permutation_test, wilson_interval

    ckpt = load_checkpoint(LM_DIR / "best.npz")
    tok = ckpt.src_tokenizer
    samples = {f"temperature {t}": [tok.decode(ids) for ids in continue_text(
        ckpt.model, [], max_new_tokens=63, temperature=t, rng=1, n=args.samples)]
        for t in (1.0, 0.7)}
    samples["the generator"] = make_toy_text(0, "mixed", seed=1, n_valid_tokens=14 * args.samples)[
        "valid"][:args.samples]
    scored = list(range(min(200, args.samples)))  # self-BLEU of these against all lines
    ok = {}
    for name, lines in samples.items():
        ok[name] = np.array([is_grammatical_mixed(line) for line in lines])
        low, high = wilson_interval(int(ok[name].sum()), len(lines))
        print(f"{name}: {ok[name].sum()}/{len(lines)} ({100 * ok[name].mean():.1f}%, 95% "
              f"interval {100 * low:.1f}-{100 * high:.1f}%) accepted by the toy grammar; "
              f"distinct-4 {distinct_n(lines, 4):.3f}, self-BLEU {self_bleu(lines, scored):.1f}; e.g.")
        for line in lines[:3]:
            print(f"    {line}")
    p = permutation_test(ok["temperature 1.0"], ok["temperature 0.7"], n_perm=2000)
    print(f"grammatical share, temperature 1.0 minus 0.7: "
          f"{100 * (ok['temperature 1.0'].mean() - ok['temperature 0.7'].mean()):+.1f} points, "
          f"permutation p = {p:.3f}")


def accuracy_of(run_dir):
    out, _, _ = npformer("eval", "--model", Path(run_dir) / "best.npz", "--json",
                         Path(run_dir) / "test.json")
    return json.loads((Path(run_dir) / "test.json").read_text())["accuracy"]


def run_finetune(args):
    from npformer.data import logistic_regression_accuracy, make_task
    from npformer.tools.stats import mean_ci, paired_diff_ci

    lm = LM_DIR / "best.npz"
    if not lm.exists():
        raise SystemExit(f"{lm} is missing: run `python benchmarks/llm.py pretrain` first")
    sizes = [int(x) for x in args.sizes.split(",")]
    seeds = range(args.seeds)
    results = {}

    def cell(values):
        m, lo, hi = mean_ci([100 * v for v in values])
        return f"{m:.1f}% [{lo:.1f}, {hi:.1f}]"

    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            results[(n, "bag of words")] = [logistic_regression_accuracy(
                *(make_task(args.task, n_train=n, seed=seed)[s] for s in ("train", "test")))
                for seed in seeds]
            for start in ("pretrained", "scratch"):
                accs = []
                for seed in seeds:
                    out_dir = Path(tmp) / f"{start}-{n}-{seed}"
                    npformer("finetune", "--from", lm, "--task", args.task, "--data-size", n,
                             "--scratch", str(start == "scratch"), "--seed", seed,
                             "--data-seed", seed, "--max-steps", args.steps,
                             "--eval-every", max(args.steps // 4, 1), "--max-minutes", 0,
                             "--out-dir", out_dir)
                    accs.append(accuracy_of(out_dir))
                results[(n, start)] = accs
                print(f"{args.task}, {n} labelled, {start}: test accuracy {cell(accs)} "
                      f"({', '.join(f'{100 * a:.1f}' for a in accs)})", flush=True)
    print(f"\ntest accuracy, mean [95% t-interval] over {args.seeds} seeds; the difference is "
          "paired (same seeds, same labelled examples)")
    print("\n| labelled examples | pretrained body | from scratch | bag of words | pretrained "
          "minus scratch (points) |\n|---|---|---|---|---|")
    for n in sizes:
        m, lo, hi = paired_diff_ci([100 * a for a in results[(n, "pretrained")]],
                                   [100 * a for a in results[(n, "scratch")]])
        print(f"| {n} | " + " | ".join(cell(results[(n, s)]) for s in
                                       ("pretrained", "scratch", "bag of words")) +
              f" | {m:+.1f} [{lo:+.1f}, {hi:+.1f}] |")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for start in ("pretrained", "scratch", "bag of words"):
        m, lo, hi = (100 * np.array(v) for v in zip(*(mean_ci(results[(n, start)])
                                                     for n in sizes)))
        ax.errorbar(sizes, m, yerr=[m - lo, hi - m], marker="o", capsize=3, label=start)
    ax.axhline(50, color="gray", ls=":", label="chance (balanced labels)")
    ax.set_xscale("log")
    ax.set_xlabel("labelled training examples")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{args.task}: fine-tuned vs from scratch, 95% intervals over {args.seeds} seeds",
                 fontsize=10)
    ax.legend()
    fig.tight_layout()
    path = REPO / "docs" / "img" / "finetune_curve.png"
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


def run_translator(args):
    from npformer.training.checkpoint import load_checkpoint

    lm = LM_DIR / "best.npz"
    if not lm.exists():
        raise SystemExit(f"{lm} is missing: run `python benchmarks/llm.py pretrain` first")
    c = load_checkpoint(lm).model.config
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        for start in ("scratch", "from LM"):
            out_dir = Path(tmp) / start.replace(" ", "_")
            flags = ["--max-steps", args.steps, "--eval-every", max(args.steps // 8, 1),
                     "--max-minutes", 0, "--out-dir", out_dir, "--eval-sentences", 200]
            if start == "from LM":
                flags += ["--init-from", lm]
            else:  # the same size, one shared vocabulary and embedding, as the LM-started run
                flags += ["--d-model", c.d_model, "--n-heads", c.n_heads, "--d-ff", c.d_ff,
                          "--n-layers", c.n_decoder_layers, "--max-len", c.max_len,
                          "--shared-vocab", "true"]
            out, _, seconds = npformer("train", *flags)
            curves[start] = [(h["step"], h["bleu"]) for h in log_records(out_dir)
                             if h["type"] == "valid"]
            test = re.search(r"BLEU ([\d.]+), exact match ([\d.]+)%", out)
            print(f"{start}: {seconds:.0f} s, validation BLEU by step {curves[start]}; test "
                  f"BLEU {test.group(1)}, exact {test.group(2)}%", flush=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for start, curve in curves.items():
        ax.plot(*zip(*curve), marker="o", label=start)
    ax.set_xlabel("step")
    ax.set_ylabel("validation BLEU")
    ax.set_title("toy translator: from scratch vs started from the pretrained LM")
    ax.legend()
    fig.tight_layout()
    path = REPO / "docs" / "img" / "translator_from_lm.png"
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["pretrain", "finetune", "translator", "all"])
    parser.add_argument("--samples", type=int, default=1000, help="pretrain: sampled lines")
    parser.add_argument("--task", default="acceptability", help="finetune: the toy task")
    parser.add_argument("--sizes", default="32,128,512,2048", help="finetune: labelled examples")
    parser.add_argument("--seeds", type=int, default=5, help="finetune: seeds per point")
    parser.add_argument("--steps", type=int, default=200, help="finetune / translator: steps")
    blas_env.add_arguments(parser, default=blas_env.AS_GIVEN)
    args = parser.parse_args(argv)
    if blas_env.dispatch(args, __file__, argv):
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}; {blas_env.kernel_report(threads=1)} (the commands' "
          "default: 1 thread)")
    for what in (["pretrain", "finetune", "translator"] if args.what == "all" else [args.what]):
        {"pretrain": run_pretrain, "finetune": run_finetune, "translator": run_translator}[what](args)


if __name__ == "__main__":
    main()
