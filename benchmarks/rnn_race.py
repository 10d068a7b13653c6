"""An RNN LM and the transformer LM on the toy text, side by side: writes notebooks/data/rnn_race.json.

    python benchmarks/rnn_race.py               # about an hour on a shared 2-core machine
    python benchmarks/rnn_race.py --seeds 1 --steps 100 --out /tmp/race.json   # a quick look

1. Learning rates: each model (the tutorial transformer LM; RNN LMs of width 64 and
   128) is trained `--sweep-steps` steps at each peak rate of --lrs (seed 0); the rate
   with the lowest validation loss is kept for that model.
2. The race: each model at its rate, seeds 0..N-1, `--steps` steps on exactly the
   batches of the tutorial LM (npformer.tools.tutorial.lm_race), validation loss every
   `--eval-every` steps, with the tokens seen and the CPU seconds of the training steps.
3. Sequential length: one training step on a batch of 4096 tokens as B rows of T
   tokens, T = 8 .. 1024 (for the RNN the same arithmetic cut into more, smaller
   sequential steps; the transformer's attention grows with T); median CPU seconds of
   --repeats steps.
After each race run, the final model's KL(generator || model) per position on 60
validation lines, averaged by part of line (npformer.tools.tutorial.kl_by_part): where its
remaining loss is. Also the multiply-add count of a training step (forward and backward, 3x the forward's
matrix products) from the shapes, so the CPU time can be turned into achieved FLOP/s.
CPU time (time.process_time, one BLAS thread) is what this process computed; on a shared
machine it moves much less than the wall clock, but it is not a benchmark on a quiet one.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODELS = {"transformer": dict(kind="transformer"), "rnn 64": dict(kind="rnn", d_model=64),
          "rnn 128": dict(kind="rnn", d_model=128)}


def flops_per_token(name, T, vocab, lm):
    """Forward + backward floating-point operations per token (2 per multiply-add, x3).

    Matrix products only (they are almost all of the work): transformer (sizes of the
    TrainConfig `lm`) per layer the packed Q,K,V and output projections, the two
    feed-forward matrices, scores and the weighted sum over T keys (the full T x T
    product, as computed, before the mask); the RNN its input and recurrent products;
    both the output projection onto the vocabulary.
    """
    if name == "transformer":
        C = lm.d_model
        layer = 2 * C * 3 * C + 2 * C * C + 2 * 2 * C * lm.d_ff + 2 * 2 * T * C
        forward = lm.n_layers * layer + 2 * C * vocab
    else:
        C = MODELS[name]["d_model"]
        forward = 2 * C * C + 2 * C * C + 2 * C * vocab
    return 3 * forward


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", default="3e-3,1e-2,3e-2")
    parser.add_argument("--sweep-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(REPO / "notebooks" / "data" / "rnn_race.json"))
    parser.add_argument("--reuse-sweep", default="", help="take the learning rates from this "
                        "earlier result (its sweep) instead of sweeping again")
    args = parser.parse_args(argv)

    from npformer.tools import tutorial
    from npformer.training.batching import Batch
    from npformer.models import build_model
    from npformer.training.optim import AdamW
    from npformer.models.rnn_lm import RNNConfig, RNNLanguageModel
    from npformer.training.config import TrainConfig
    from npformer.training.loop import train_step

    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    lrs = [float(x) for x in args.lrs.split(",")]

    def say(line):
        print(line, flush=True)

    # 1. learning rates
    sweep, chosen = {}, {}
    if args.reuse_sweep:
        earlier = json.loads(Path(args.reuse_sweep).read_text())
        sweep, chosen, lrs = earlier["sweep"], earlier["chosen_lr"], earlier["lrs"]
        args.sweep_steps = earlier["sweep_steps"]
    for name, spec in (MODELS.items() if not args.reuse_sweep else ()):
        for lr in lrs:
            _, records = tutorial.lm_race(steps=args.sweep_steps, eval_every=args.sweep_steps,
                                          lr=lr, **spec)
            sweep.setdefault(name, {})[lr] = records[-1]["valid_loss"]
            say(f"sweep {name} lr {lr:g}: valid loss {records[-1]['valid_loss']:.4f}")
        chosen[name] = min(sweep[name], key=sweep[name].get)

    # 2. the race, and where each model's remaining loss is (KL by part of line, 60 lines)
    from npformer.data import line_next_token_distributions, make_toy_text

    tok = tutorial.toy_lm(log=say).src_tokenizer  # the same tokenizer lm_race builds
    kl_lines = make_toy_text(200_000, kind="mixed", seed=0)["valid"][:60]
    truth = [line_next_token_distributions(line) for line in kl_lines]
    race, kl = {}, {}
    vocab = None
    for name, spec in MODELS.items():
        for seed in range(args.seeds):
            model, records = tutorial.lm_race(steps=args.steps, eval_every=args.eval_every,
                                              seed=seed, lr=chosen[name], **spec)
            race.setdefault(name, []).append(records)
            parts, _, _ = tutorial.kl_by_part(model, tok, kl_lines, truth)
            kl.setdefault(name, []).append({part: float(np.mean(v)) for part, v in parts.items()})
            vocab = model.params["out.b"].shape[0]
            say(f"race {name} seed {seed}: {model.n_params:,} parameters, valid loss "
                f"{records[-1]['valid_loss']:.4f} after {records[-1]['cpu_seconds']:.1f} CPU s")

    # 3. sequential length at a fixed number of tokens per batch
    lm_cfg = TrainConfig(**{**tutorial.TUTORIAL_LM, "out_dir": "unused"})
    lengths, tokens = (8, 32, 128, 512, 1024), 4096
    shapes = {"transformer": lm_cfg.replace(max_len=max(lengths)).model_config(vocab, vocab)}
    rng = np.random.default_rng(0)
    per_length = {}
    for name, spec in MODELS.items():
        if spec["kind"] == "rnn":
            model = RNNLanguageModel(RNNConfig(vocab, spec["d_model"]))
        else:
            model = build_model(shapes["transformer"])
        opt = AdamW(model.params, lr=1e-4)
        for T in lengths:
            B = tokens // T
            ids = rng.integers(4, vocab, size=(B, T + 1))
            batch = Batch(None, ids[:, :-1], ids[:, 1:], B * T)
            times = []
            for i in range(args.repeats + 2):
                c0 = time.process_time()
                train_step(model, opt, batch, 1e-4, None, 0.0, 1.0)
                if i >= 2:  # two warm-up steps
                    times.append(time.process_time() - c0)
            per_length.setdefault(name, {})[T] = statistics.median(times)
            say(f"length {name} T {T} (B {B}): {1000 * per_length[name][T]:.1f} ms CPU per step")

    result = {
        "what": "notebook 10: an RNN LM and the transformer LM trained on the same toy-text "
                "batches; CPU seconds of the training steps",
        "command": "python benchmarks/rnn_race.py",
        "tutorial_lm": tutorial.TUTORIAL_LM, "models": MODELS, "lrs": lrs,
        "sweep_steps": args.sweep_steps, "sweep": sweep, "chosen_lr": chosen,
        "steps": args.steps, "eval_every": args.eval_every, "race": race,
        "kl_by_part": kl, "kl_lines": len(kl_lines),
        "tokens_per_batch": tokens, "lengths": list(lengths), "per_length": per_length,
        "flops_per_token": {name: {T: flops_per_token(name, T, vocab, lm_cfg) for T in lengths}
                            for name in MODELS},
        "machine": {"python": sys.version.split()[0], "cpus": os.cpu_count(),
                    "platform": platform.platform(), "numpy": np.__version__,
                    "load_average_start": load_start, "load_average_end": os.getloadavg()[0],
                    "minutes": (time.perf_counter() - t_start) / 60},
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
