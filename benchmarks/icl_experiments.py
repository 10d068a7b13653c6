"""The in-context-learning experiments of notebook 12 (run by hand; results in notebooks/data/).

    python benchmarks/icl_experiments.py phase       # the few-shot run with snapshots (~4 min)
    python benchmarks/icl_experiments.py diversity   # memorise or generalise: 6 x 5 runs (~40 min)
    python benchmarks/icl_experiments.py suffix      # the suffix rule in BPE word parts (~6 min)
    python benchmarks/icl_experiments.py lexicon     # the toy-icl contrast model's answers (~3 min)
    python benchmarks/icl_experiments.py all

(times on an idle 2-core CPU; each part prints its own.)

phase: trains npformer.tools.induction.FewShotRun (a 2-layer LanguageModel on few-shot lines
with a fresh mapping per line, npformer/data/fewshot.py) and scores it every few steps:
accuracy against k on held-out symbols, the ICL score, each head's prefix-matching and
previous-token scores. Writes notebooks/data/icl_phase.json and the trained model,
notebooks/data/icl_fewshot.npz (no optimizer state).

diversity: the same run with a pool of M fixed mappings instead of a fresh one per line,
for M in DIVERSITY_MAPPINGS and seeds 0-4; at a few steps, accuracy on fresh mappings
(in-context learning) and on the training mappings with the query absent from the
examples (only the weights can answer). Writes notebooks/data/icl_diversity.json.

suffix: `npformer pretrain --data toy-suffix --tokenizer bpe` (a made-up suffix rule
per line, npformer/data/suffixes.py), then greedy answers on held-out stems, with
training and with held-out suffixes, against k. Writes notebooks/data/icl_suffix.json.

lexicon: the model of the toy-icl experiment (npformer.tools.tutorial.icl_lm, the word-level
lexicon tasks) answers every prompt notebook 12 scores, whole and with each head
ablated; its attention on one prompt. Writes notebooks/data/icl_lexicon.json.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from npformer.tools import induction  # noqa: E402
from npformer.training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from npformer.data import fewshot, icl, suffixes  # noqa: E402
from npformer.models.decoding import continue_text  # noqa: E402
from npformer.models import build_model  # noqa: E402
from npformer.nn.threads import set_blas_threads  # noqa: E402

DATA = REPO / "notebooks" / "data"
PHASE_STEPS = 2500
PHASE_KS = (0, 1, 2, 4, 8)
DIVERSITY_MAPPINGS = (1, 2, 4, 8, 16, 0)  # 0: a fresh mapping per line
DIVERSITY_SEEDS = (0, 1, 2, 3, 4)
DIVERSITY_STEPS = (250, 500, 1000)
SUFFIX_RUN = ["--data", "toy-suffix", "--tokenizer", "bpe", "--vocab-size", "512",
              "--data-size", "600000", "--max-len", "64", "--d-model", "64", "--n-heads", "4",
              "--d-ff", "256", "--n-layers", "2", "--dropout", "0", "--label-smoothing", "0",
              "--lr", "3e-3", "--warmup-steps", "100", "--schedule", "constant",
              "--max-steps", "3000", "--max-minutes", "0", "--eval-every", "500",
              "--max-tokens", "4096", "--seed", "0"]
SUFFIX_KS = (0, 1, 2, 3, 4, 6)


def phase_snapshot_steps(max_steps):
    """Every 25 steps up to 1,000 (the phase change), then every 100."""
    return sorted(set(range(25, min(max_steps, 1000) + 1, 25)) | set(range(100, max_steps + 1, 100)))


def write_json(name, data):
    path = DATA / name
    path.write_text(json.dumps(data, separators=(",", ":")) + "\n")  # compact: shipped in git
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB)")


def run_phase(args):
    run = induction.FewShotRun(max_steps=args.steps)
    tok = induction.fewshot_tokenizer(run.spec)
    snapshots = []
    t0 = time.perf_counter()

    def on_snapshot(step, model, tok):
        snapshots.append({"step": step, **induction.snapshot(model, tok, run.spec, PHASE_KS)})
        s = snapshots[-1]
        print(f"step {step:5d} ({time.perf_counter() - t0:5.0f} s): k=4 "
              f"{s['hits'][4]}/{s['n']}, ICL score {s['icl_score']:.2f}, prefix matching "
              f"{np.max(s['prefix_matching']):.2f}", flush=True)

    on_snapshot(0, build_model(run.model_config(tok.vocab_size)), tok)  # the initial weights
    model, tok, losses = induction.train_fewshot(
        run, snapshot_steps=set(phase_snapshot_steps(run.max_steps)), on_snapshot=on_snapshot)
    seconds = time.perf_counter() - t0
    save_checkpoint(DATA / "icl_fewshot.npz", model, tok, tok,
                    state={"fewshot_run": run.to_dict()})
    print(f"wrote {DATA / 'icl_fewshot.npz'}")
    write_json("icl_phase.json", {
        "command": "python benchmarks/icl_experiments.py phase", "seconds": round(seconds),
        "run": run.to_dict(), "ks": list(PHASE_KS),
        "loss_every_25": [float(np.mean(losses[i:i + 25])) for i in range(0, len(losses), 25)],
        "snapshots": snapshots})


def run_diversity(args):
    records = []
    t0 = time.perf_counter()
    for n_mappings in DIVERSITY_MAPPINGS:
        for seed in DIVERSITY_SEEDS:
            spec = fewshot.FewShotSpec(n_mappings=n_mappings, seed=seed)
            run = induction.FewShotRun(spec=spec, max_steps=max(DIVERSITY_STEPS), seed=seed)

            def on_snapshot(step, model, tok, spec=spec, seed=seed):
                row = {"n_mappings": n_mappings, "seed": seed, "step": step, "n": args.n}
                for name, symbols, mapping, query in (
                        ("fresh_train_symbols", "train", "fresh", "shown"),
                        ("fresh_heldout_symbols", "heldout", "fresh", "shown"),
                        ("fixed_query_shown", "train", "fixed", "shown"),
                        ("fixed_query_absent", "train", "fixed", "absent")):
                    if mapping == "fixed" and not spec.n_mappings:
                        continue
                    scores = induction.fewshot_scores(model, tok, spec, (4,), args.n, symbols,
                                                      mapping, query, seed=100 + seed)
                    row[name] = scores[4]["hits"]
                records.append(row)
                print(f"M={n_mappings} seed {seed} step {step} "
                      f"({time.perf_counter() - t0:.0f} s): {row}", flush=True)

            induction.train_fewshot(run, snapshot_steps=set(DIVERSITY_STEPS),
                                    on_snapshot=on_snapshot)
    write_json("icl_diversity.json", {
        "command": "python benchmarks/icl_experiments.py diversity",
        "seconds": round(time.perf_counter() - t0), "k": 4, "run": induction.FewShotRun(
            max_steps=max(DIVERSITY_STEPS)).to_dict(), "records": records})


def greedy_answer(model, tok, prompt, max_new_tokens=8):
    """The model's greedy continuation of a prompt, up to the first ";" (or line end)."""
    ids = continue_text(model, tok.encode(prompt), max_new_tokens=max_new_tokens)[0]
    return tok.decode(ids).split(suffixes.SEPARATOR)[0].strip()


def run_suffix(args):
    from npformer.cli import main as cli_main

    out = REPO / "runs" / "icl_suffix"
    t0 = time.perf_counter()
    cli_main(["pretrain", *SUFFIX_RUN, "--out-dir", str(out)])
    train_seconds = time.perf_counter() - t0
    ckpt = load_checkpoint(out / "best.npz")
    model, tok = ckpt.model, ckpt.src_tokenizer
    results = {}
    for stems, suffix_pool in (("heldout", "train"), ("heldout", "heldout"), ("train", "train")):
        for k in SUFFIX_KS:
            prompts = suffixes.make_suffix_prompts(k, args.n, stems, suffix_pool, seed=0)
            said = [greedy_answer(model, tok, prompt) for prompt, _ in prompts]
            results[f"{stems}_stems/{suffix_pool}_suffixes/k={k}"] = said
            hits = sum(s == a for s, (_, a) in zip(said, prompts))
            print(f"{stems} stems, {suffix_pool} suffixes, k={k}: {hits}/{args.n}", flush=True)
    history = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    write_json("icl_suffix.json", {
        "command": "python benchmarks/icl_experiments.py suffix",
        "pretrain": "npformer pretrain " + " ".join(SUFFIX_RUN),
        "train_seconds": round(train_seconds),
        "seconds": round(time.perf_counter() - t0), "n": args.n,
        "valid_loss": [[h["step"], h["valid_loss"]] for h in history if h["type"] == "valid"],
        "tokenizer": tok.to_dict(), "answers": results})


def run_lexicon(args):
    from npformer.tools import tutorial

    t0 = time.perf_counter()
    ckpt = tutorial.icl_lm()
    model, tok = ckpt.model, ckpt.src_tokenizer

    def answers(model, prompts):
        out = []
        for prompt, _, _ in prompts:
            ids = continue_text(model, tok.encode(prompt), max_new_tokens=2)[0]
            out.append(icl.completion_answer(tok.decode(ids)))
        return out

    said = {}
    for split in icl.SPLITS:
        for k in icl.EVAL_KS:
            said[f"{split}/k={k}"] = answers(model, icl.make_icl_prompts(split, k, args.n, seed=0))
        said[f"{split}/task_word"] = answers(
            model, icl.make_icl_prompts(split, 0, args.n, seed=0, task_word=True))
    cfg = model.config
    ablated = {}
    for layer in range(cfg.n_decoder_layers):
        for head in range(cfg.n_heads):
            without = induction.ablate_heads(model, [(layer, head)])
            for k in (4, 8):
                ablated[f"{layer}.{head}/k={k}"] = answers(
                    without, icl.make_icl_prompts("heldout_words", k, args.n, seed=0))
    shares, example = attention_shares(model, tok, args.n)
    write_json("icl_lexicon.json", {
        "command": "python benchmarks/icl_experiments.py lexicon",
        "model": "npformer.tools.tutorial.icl_lm() (ICL_LM settings)",
        "settings": {k: tutorial.ICL_LM[k] for k in ("data", "data_size", "max_steps",
                                                     "d_model", "n_layers", "n_heads")},
        "n_params": model.n_params, "n": args.n, "seconds": round(time.perf_counter() - t0),
        "said": said, "ablated_heldout_words": ablated,
        "attention_shares": shares, "attention_example": example})


POSITION_KINDS = ("example answers", "example inputs", "'->' and ';'", "query word", "BOS")


def position_kinds(prompt):
    """The kind of each position of [BOS] + a word-level prompt "a -> x ; b -> y ; q ->"."""
    words = prompt.split()
    kinds = ["BOS"]
    for i, word in enumerate(words):
        if word in (icl.ARROW, icl.SEPARATOR):
            kinds.append("'->' and ';'")
        elif i == len(words) - 2:
            kinds.append("query word")
        elif i > 0 and words[i - 1] == icl.ARROW:
            kinds.append("example answers")
        else:
            kinds.append("example inputs")
    return kinds


def attention_shares(model, tok, n):
    """Article prompts (held-out words, k = 4): each head's attention from the last position.

    -> ({"layer.head": {kind: mean share}}, one prompt's attention maps (L,H,T,T) and labels)
    """
    from npformer.tokenizers import BOS_ID

    prompts = [p for p in icl.make_icl_prompts("heldout_words", 4, 7 * n, seed=0)
               if p[2] == "article"][:n]
    totals = {}
    for prompt, _, _ in prompts:
        ids = np.array([[BOS_ID] + tok.encode(prompt)])  # (1,T)
        kinds = np.array(position_kinds(prompt))
        assert len(kinds) == ids.shape[1], "one word, one token: the toy-icl vocabulary"
        P = induction.attention(model, ids)[:, 0, :, -1]  # (L,1,H,T,T) -> (L,H,T)
        for layer in range(P.shape[0]):
            for head in range(P.shape[1]):
                row = totals.setdefault(f"{layer}.{head}", {kind: 0.0 for kind in POSITION_KINDS})
                for kind in POSITION_KINDS:
                    row[kind] += float(P[layer, head, kinds == kind].sum()) / len(prompts)
    prompt, answer, _ = prompts[0]
    ids = np.array([[BOS_ID] + tok.encode(prompt)])
    maps = induction.attention(model, ids)[:, 0]  # (L,H,T,T)
    example = {"prompt": prompt, "answer": answer, "labels": ["<bos>"] + prompt.split(),
               "attention": np.round(maps, 4).tolist()}
    return totals, example


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("phase", "diversity", "suffix", "lexicon", "all"))
    parser.add_argument("--steps", type=int, default=PHASE_STEPS, help="phase: training steps")
    parser.add_argument("--n", type=int, default=0, help="prompts per score (0: the default "
                        "of each part)")
    args = parser.parse_args(argv)
    set_blas_threads(1)
    parts = {"phase": (run_phase, 0), "diversity": (run_diversity, 500),
             "suffix": (run_suffix, 200), "lexicon": (run_lexicon, 200)}
    for name, (fn, default_n) in parts.items():
        if args.what in (name, "all"):
            fn(argparse.Namespace(**{**vars(args), "n": args.n or default_n}))


if __name__ == "__main__":
    main()
