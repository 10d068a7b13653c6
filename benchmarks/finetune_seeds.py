"""Notebook 11's fine-tuning grid, over seeds: writes notebooks/data/finetune_seeds.json.

    python benchmarks/finetune_seeds.py                 # the full grid (about an hour on 2 cores)
    python benchmarks/finetune_seeds.py --seeds 2 --sizes 16 --out /tmp/x.json   # a quick look

For each number of labels n (plural_subject) and each seed (which draws the n labelled
examples, the head's initialisation and the batch order; the same seed gives every
condition the same examples, so differences are paired):

  baselines   majority class; bag of words (logistic regression and naive Bayes on word
              counts, npformer/data/baselines.py), trained on the same n examples
  probes      a linear probe (the same logistic regression) on the frozen pretrained
              body's vector at three positions: the text's last token ("before_eos"),
              EOS ("last", a position the LM never read) and the mean
  fine-tuned  tutorial.finetune: 60 steps from the pretrained LM ("pretrained", the head
              on "before_eos"), the same from scratch ("scratch"), and from the LM with
              the head on EOS ("pretrained, EOS": the confound measured)

and for each fine-tuned model: test accuracy (500 sentences); for the ones started from
the LM, the body's loss as a language model on the LM's validation text (forgetting:
npformer.models.pretrained.body_as_language_model); for "pretrained" and "scratch", the
singular values of every body matrix's change (npformer.tools.weight_change), and the test
accuracy when each change is cut to rank 1, 2, 4, 8 (what a LoRA update of that rank
could express at most). The LM is the tutorial LM (npformer.tools.tutorial.toy_lm_run), the
one notebook 11 starts from.
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RANKS = (1, 2, 4, 8)
PROBE_POOLINGS = ("before_eos", "last", "mean")


def labelled(items, labels):
    """(texts, label indices) of (text, label) items."""
    return [t for t, _ in items], np.array([labels.index(y) for _, y in items])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,64,256,1024", help="numbers of labels")
    parser.add_argument("--seeds", type=int, default=8, help="seeds 0..N-1 per size")
    parser.add_argument("--out", default=str(REPO / "notebooks" / "data" / "finetune_seeds.json"))
    parser.add_argument("--resume", default="", help="a log of an interrupted run (its printed "
                        "records): fine-tuning runs found there are not run again")
    args = parser.parse_args(argv)

    from npformer.tools import tutorial
    from npformer.tools import weight_change as wc
    from npformer.training.checkpoint import load_checkpoint
    from npformer.training.config import TrainConfig
    from npformer.data import logistic_regression_accuracy, make_task, naive_bayes_accuracy
    from npformer.data.baselines import logistic_regression, majority_accuracy
    from npformer.tasks.evaluation import validation_loss
    from npformer.models import build_model
    from npformer.models.pretrained import body_as_language_model, load_pretrained
    from npformer.tasks import TASKS, ModelBundle, accuracy
    from npformer.nn.threads import set_blas_threads
    from npformer.tokenizers import BOS_ID, EOS_ID, PAD_ID
    from npformer.training.session import load_corpus

    set_blas_threads(1)
    t_start = time.perf_counter()
    lm_path = tutorial.toy_lm_run(log=print) / "best.npz"
    lm = load_checkpoint(lm_path)
    tok = lm.src_tokenizer
    lm_task = TASKS["lm"]
    lm_cfg = TrainConfig(**{**tutorial.TUTORIAL_LM, "out_dir": "unused"})
    lm_valid, _ = lm_task.encode(load_corpus(lm_cfg)[0]["valid"],
                                 ModelBundle(lm.model, tok, tok, [], ""), lm_cfg)
    lm_loss = validation_loss(lm.model, lm_valid, lm_cfg.max_tokens, lm_task)
    print(f"the LM's own validation loss: {lm_loss:.4f}", flush=True)
    clf_task = TASKS["classify"]

    def ids_of(texts):  # (N,T) padded [BOS] text [EOS]
        rows = [[BOS_ID] + tok.encode(t) + [EOS_ID] for t in texts]
        ids = np.full((len(rows), max(map(len, rows))), PAD_ID, dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = r
        return ids

    def test_accuracy(model, labels, test):
        built = ModelBundle(model, tok, tok, labels, "")
        examples, _ = clf_task.encode(test, built, lm_cfg)
        return accuracy(model, examples, 2048, clf_task)

    runs = []
    spectra = {}  # one example of full spectra: n = 256, seed 0
    done = {}  # (n, seed, condition) -> record, from --resume
    if args.resume:
        for line in Path(args.resume).read_text().splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                done[r["n"], r["seed"], r["condition"]] = r
    sizes = [int(s) for s in args.sizes.split(",")]
    for n in sizes:
        for seed in range(args.seeds):
            data = make_task(tutorial.FINETUNE["data"], n_train=n, seed=seed)
            labels = sorted({y for _, y in data["train"]})
            train_texts, y_train = labelled(data["train"], labels)
            test_texts, y_test = labelled(data["test"], labels)
            base = {"n": n, "seed": seed}
            runs.append({**base, "condition": "majority",
                         "accuracy": majority_accuracy(data["train"], data["test"])})
            runs.append({**base, "condition": "bag of words (logistic regression)",
                         "accuracy": logistic_regression_accuracy(data["train"], data["test"])})
            runs.append({**base, "condition": "bag of words (naive Bayes)",
                         "accuracy": naive_bayes_accuracy(data["train"], data["test"])})
            for pooling in PROBE_POOLINGS:  # linear probes of the frozen pretrained body
                probe_model = build_model(lm.model.config.replace(n_classes=len(labels),
                                                                  pooling=pooling))
                load_pretrained(probe_model, lm.model, ("decoder",))
                X_train = probe_model.features(ids_of(train_texts))
                X_test = probe_model.features(ids_of(test_texts))
                predicted = logistic_regression(X_train, y_train, X_test, len(labels),
                                                standardize=True)
                runs.append({**base, "condition": f"linear probe ({pooling})",
                             "accuracy": float((predicted == y_test).mean())})
            for condition, scratch, pooling in (("pretrained", False, "before_eos"),
                                                ("scratch", True, "before_eos"),
                                                ("pretrained, EOS", False, "last")):
                if (n, seed, condition) in done and not (n == 256 and seed == 0):
                    runs.append(done[n, seed, condition])  # (n 256, seed 0: for its spectra)
                    continue
                t0 = time.perf_counter()
                acc, best = tutorial.finetune(lm_path, n, seed, scratch=scratch, pooling=pooling)
                model = best.model
                record = {**base, "condition": condition, "accuracy": acc,
                          "seconds": time.perf_counter() - t0}
                if not scratch:
                    back = body_as_language_model(model, lm.model)
                    record["lm_loss"] = validation_loss(back, lm_valid, lm_cfg.max_tokens, lm_task)
                if condition in ("pretrained", "scratch"):
                    if scratch:  # the control: the same architecture's initial weights
                        before = build_model(model.config).params
                    else:
                        start = build_model(model.config)
                        load_pretrained(start, lm.model, ("decoder",))
                        before = start.params
                    keys = wc.matrix_keys(model.params)
                    s = {k: wc.spectrum(before, model.params, k) for k in keys}
                    record["energy_top"] = {k: float(np.mean([wc.energy_in_top(v, k)
                                                              for v in s.values()]))
                                            for k in RANKS}
                    record["effective_rank"] = float(np.mean([wc.effective_rank(v)
                                                              for v in s.values()]))
                    record["relative_change"] = wc.relative_change(before, model.params)
                    record["rank_accuracy"] = {}
                    for r in RANKS:
                        cut = build_model(model.config, wc.low_rank_update(before, model.params, r))
                        record["rank_accuracy"][r] = test_accuracy(cut, labels, data["test"])
                    if n == 256 and seed == 0:
                        spectra[condition] = {k: v.tolist() for k, v in s.items()}
                runs.append(record)
                print(json.dumps(record), flush=True)
    result = {
        "what": "notebook 11: plural_subject, fine-tuned vs scratch vs probes vs bag of words",
        "command": "python benchmarks/finetune_seeds.py",
        "finetune_settings": tutorial.FINETUNE,
        "lm": {"settings": tutorial.TUTORIAL_LM, "valid_loss": lm_loss},
        "sizes": sizes, "seeds": list(range(args.seeds)), "ranks": list(RANKS),
        "runs": runs, "spectra_n256_seed0": spectra,
        "machine": {"python": sys.version.split()[0], "cpus": os.cpu_count(),
                    "platform": platform.platform(), "numpy": np.__version__,
                    "minutes": (time.perf_counter() - t_start) / 60},
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
