"""Training: `train(config) -> history`, reading top to bottom.

data -> tokenizers -> model -> optimizer -> loop (teacher forcing, next-token
loss, AdamW, warm-up schedule, clipping) -> periodic validation (loss + BLEU on
a sample, best checkpoint, early stopping) -> final evaluation and a plot.

Files written to config.out_dir:
  last.npz     latest state, for --resume (saved at every validation and at the end)
  best.npz     the checkpoint with the best validation BLEU so far
  log.jsonl    one JSON record per logged step / validation (appended as it happens)
  curves.png   training / validation loss and the learning rate against the step
"""
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .batching import bucket_batches, collate, encode_pairs
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import (load_parallel, load_tsv, make_copy_task, make_reverse_task, make_toy_corpus,
                   split_pairs)
from .metrics import corpus_bleu, exact_match
from .model import Transformer
from .optim import AdamW, clip_grad_norm, make_schedule
from .tape import Tape
from .threads import set_blas_threads
from .tokenizers import make_tokenizers


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the message says what to try."""


# ----------------------------------------------------------------------------- data
def load_corpus(cfg):
    """The train/valid/test pairs named by cfg.data. Returns (splits dict, description)."""
    if cfg.data == "toy":
        return make_toy_corpus(seed=cfg.data_seed), "built-in toy corpus (English -> Velan)"
    if cfg.data == "copy":
        return make_copy_task(seed=cfg.data_seed), "copy task"
    if cfg.data == "reverse":
        return make_reverse_task(seed=cfg.data_seed), "reverse task"
    if cfg.tgt_file:
        loaded = load_parallel(cfg.data, cfg.tgt_file)
        source = f"{cfg.data} + {cfg.tgt_file}"
    else:
        loaded = load_tsv(cfg.data)
        source = cfg.data
    splits = split_pairs(loaded.pairs, cfg.valid_frac, cfg.test_frac, seed=cfg.data_seed)
    note = f"{source}: {len(loaded.pairs)} pairs"
    if loaded.skipped:
        note += f" ({loaded.skipped} empty pairs skipped)"
    return splits, note


def build_tokenizers(cfg, train_pairs):
    """Train the source and target tokenizers on the training split."""
    vocab = cfg.vocab_size or (8000 if cfg.tokenizer == "bpe" else None)
    return make_tokenizers([s for s, _ in train_pairs], [t for _, t in train_pairs],
                           kind=cfg.tokenizer, vocab_size=vocab, shared=cfg.shared_vocab)


# ----------------------------------------------------------------------- evaluation
def validation_loss(model, examples, max_tokens):
    """Mean next-token cross-entropy (no smoothing, no dropout) over examples."""
    total, count = 0.0, 0
    for idx in bucket_batches(examples, max_tokens, seed=0, epoch=0, shuffle=False):
        batch = collate([examples[i] for i in idx])
        total += model.loss(batch.src, batch.tgt_in, batch.tgt_out) * batch.n_tokens
        count += batch.n_tokens
    return total / max(count, 1)


def translate_texts(model, src_tok, tgt_tok, texts, method="greedy", **kw):
    """Translate a list of strings (greedy or beam); returns a list of strings."""
    from .decoding import translate_ids
    from .tokenizers import EOS_ID

    max_src = model.config.max_len - 1
    rows = [src_tok.encode(t)[:max_src] + [EOS_ID] if t.strip() else [] for t in texts]
    out = translate_ids(model, rows, method=method, **kw)
    return [tgt_tok.decode(ids) for ids in out]


def evaluate(model, src_tok, tgt_tok, pairs, method="greedy", **kw):
    """BLEU, exact match and the per-sentence hypotheses for (source, reference) pairs."""
    hyps = translate_texts(model, src_tok, tgt_tok, [s for s, _ in pairs], method, **kw)
    refs = [t for _, t in pairs]
    bleu = corpus_bleu(hyps, refs)
    return {"bleu": bleu.score, "exact_match": exact_match(hyps, refs), "n": len(pairs),
            "hypotheses": hyps}


# ---------------------------------------------------------------------- the loop
def _schedule(cfg):
    if cfg.schedule == "warmup_cosine":
        return make_schedule("warmup_cosine", peak_lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                             total_steps=cfg.max_steps, min_lr=cfg.lr * 0.02)
    if cfg.schedule == "inverse_sqrt":  # peak lr reached at the end of warm-up
        return make_schedule("inverse_sqrt_warmup", d_model=cfg.d_model,
                             warmup_steps=max(cfg.warmup_steps, 1),
                             scale=cfg.lr * math.sqrt(cfg.d_model * max(cfg.warmup_steps, 1)))
    return make_schedule("constant_with_warmup", peak_lr=cfg.lr, warmup_steps=cfg.warmup_steps)


def _clock(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}:{seconds % 60:02d}"


def train(cfg, resume=False, log=None):
    """Train a translator as configured; returns the history (list of log records).

    resume=True continues from out_dir/last.npz exactly where it stopped (same
    batches, same dropout masks, same optimizer state). `log(line)` receives the
    progress lines (default: print to stderr).
    """
    if log is None:
        def log(line):
            print(line, file=sys.stderr, flush=True)
    if not isinstance(cfg, TrainConfig):
        raise TypeError("cfg must be a TrainConfig")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    set_blas_threads(cfg.threads)

    # data
    splits, note = load_corpus(cfg)
    log(f"data: {note}; train {len(splits['train'])}, valid {len(splits['valid'])}, "
        f"test {len(splits['test'])}")
    if not splits["train"] or not splits["valid"]:
        raise TrainingError("the corpus needs at least one training and one validation pair")

    # tokenizers, model, optimizer (fresh, or from the last checkpoint)
    state = {"step": 0, "best_bleu": -1.0, "evals_without_gain": 0}
    if resume:
        ckpt = load_checkpoint(out / "last.npz")
        saved = TrainConfig.from_dict(ckpt.train_config)
        if {**saved.to_dict(), "max_minutes": 0} != {**cfg.to_dict(), "max_minutes": 0}:
            log("note: resuming with the configuration saved in the checkpoint")
        cfg = saved.replace(max_minutes=cfg.max_minutes, threads=cfg.threads)
        model, src_tok, tgt_tok = ckpt.model, ckpt.src_tokenizer, ckpt.tgt_tokenizer
        state.update(ckpt.state)
    else:
        src_tok, tgt_tok = build_tokenizers(cfg, splits["train"])
        model = Transformer(cfg.model_config(src_tok.vocab_size, tgt_tok.vocab_size))
        (out / "log.jsonl").write_text("")
    log(f"vocab: source {src_tok.vocab_size}, target {tgt_tok.vocab_size} ({cfg.tokenizer}); "
        f"model: {model.n_params:,} parameters")
    opt = AdamW(model.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if resume and ckpt.optimizer_state is not None:
        opt.load_state_dict(ckpt.optimizer_state)
    schedule = _schedule(cfg)
    rng = np.random.default_rng(cfg.seed)  # dropout masks
    if resume:
        rng.bit_generator.state = state["rng"]

    examples, dropped = encode_pairs(splits["train"], src_tok, tgt_tok, cfg.max_len)
    valid_examples, _ = encode_pairs(splits["valid"], src_tok, tgt_tok, cfg.max_len)
    if dropped:
        log(f"note: {dropped} training pairs longer than max_len={cfg.max_len} were left out")
    if not examples:
        raise TrainingError(f"no training pair fits in max_len={cfg.max_len}")
    n_batches = len(bucket_batches(examples, cfg.max_tokens, cfg.seed, 0))
    eval_pairs = splits["valid"][: cfg.eval_sentences]

    history = []
    log_file = open(out / "log.jsonl", "a", encoding="utf-8")

    def record(entry):
        history.append(entry)
        log_file.write(json.dumps(entry) + "\n")
        log_file.flush()

    def save(name):
        save_checkpoint(out / name, model, src_tok, tgt_tok, cfg.to_dict(), opt.state_dict(),
                        {**state, "rng": rng.bit_generator.state})

    def validate(step):
        vloss = validation_loss(model, valid_examples, cfg.max_tokens)
        result = evaluate(model, src_tok, tgt_tok, eval_pairs)
        entry = {"type": "valid", "step": step, "valid_loss": vloss, "bleu": result["bleu"],
                 "exact_match": result["exact_match"]}
        record(entry)
        improved = result["bleu"] > state["best_bleu"]
        if improved:
            state["best_bleu"] = result["bleu"]
            state["evals_without_gain"] = 0
        else:
            state["evals_without_gain"] += 1
        save("last.npz")
        if improved:
            save("best.npz")
        log(f"valid step {step}: loss {vloss:.3f}, BLEU {result['bleu']:.1f}, exact match "
            f"{100 * result['exact_match']:.1f}% ({len(eval_pairs)} sentences)"
            + ("  [best, saved]" if improved else ""))

    # the loop
    t_loop = time.perf_counter()
    step = start_step = state["step"]
    batch_cache = {}
    window_loss, window_tokens, window_t0 = 0.0, 0, time.perf_counter()
    stop_reason = "max_steps reached"
    consistent = True
    try:
        while step < cfg.max_steps:
            epoch, index = divmod(step, n_batches)
            if epoch not in batch_cache:
                batch_cache = {epoch: bucket_batches(examples, cfg.max_tokens, cfg.seed, epoch)}
            batch = collate([examples[i] for i in batch_cache[epoch][index]])
            step += 1
            lr = schedule(step)
            tape = Tape()
            model.zero_grad()
            loss = model.loss(batch.src, batch.tgt_in, batch.tgt_out, tape=tape, train=True,
                              rng=rng, label_smoothing=cfg.label_smoothing)
            if not math.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss} at step {step}; stopped without saving. The last "
                    f"good checkpoint (if any) is {out / 'last.npz'}. Try a lower --lr "
                    f"(now {cfg.lr:g}) or a longer --warmup-steps.")
            tape.backward(model.grads, "loss")
            if cfg.clip_norm > 0:
                clip_grad_norm(model.grads, cfg.clip_norm)
            consistent = False  # parameters are being updated: not a state to save
            opt.step(model.grads, lr=lr)
            state["step"] = step
            consistent = True
            window_loss += loss * batch.n_tokens
            window_tokens += batch.n_tokens
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                now = time.perf_counter()
                tok_s = window_tokens / max(now - window_t0, 1e-9)
                elapsed = now - t_loop
                per_step = elapsed / max(step - start_step, 1)
                eta = (cfg.max_steps - step) * per_step
                if cfg.max_minutes:
                    eta = min(eta, cfg.max_minutes * 60 - elapsed)
                entry = {"type": "train", "step": step, "epoch": epoch, "loss": loss,
                         "window_loss": window_loss / window_tokens, "lr": lr,
                         "tokens_per_s": tok_s, "elapsed_s": now - t_start}
                record(entry)
                log(f"step {step:>5} | epoch {epoch} | loss {entry['window_loss']:.3f} | "
                    f"{tok_s:,.0f} tok/s | lr {lr:.2e} | {_clock(now - t_start)} elapsed, "
                    f"ETA {_clock(eta)}")
                window_loss, window_tokens, window_t0 = 0.0, 0, now
            if step % cfg.eval_every == 0:
                validate(step)
                if cfg.patience and state["evals_without_gain"] >= cfg.patience:
                    stop_reason = f"no BLEU gain in {cfg.patience} validations (early stop)"
                    break
            if cfg.max_minutes and time.perf_counter() - t_loop > cfg.max_minutes * 60:
                stop_reason = f"time budget of {cfg.max_minutes:g} min reached"
                break
        if not history or history[-1].get("type") != "valid" or history[-1]["step"] != step:
            validate(step)
    except KeyboardInterrupt:
        if consistent:  # Ctrl-C: keep the work done so far
            save("last.npz")
            log(f"interrupted at step {state['step']}; saved {out / 'last.npz'}; continue "
                f"with: npformer train --resume --out-dir {out}")
        raise
    finally:
        log_file.close()
    log(f"stopped at step {step}: {stop_reason}; training took "
        f"{_clock(time.perf_counter() - t_start)}")
    plot_history(history, out / "curves.png")
    return history


def plot_history(history, path):
    """Save training/validation loss and learning rate against the step as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

    train_rows = [h for h in history if h["type"] == "train"]
    valid_rows = [h for h in history if h["type"] == "valid"]
    fig = Figure(figsize=(10, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot([h["step"] for h in train_rows], [h["window_loss"] for h in train_rows],
             label="training loss (smoothed labels)")
    ax1.plot([h["step"] for h in valid_rows], [h["valid_loss"] for h in valid_rows], "o-",
             label="validation loss")
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy (nats / token)")
    ax1.set_title("Loss")
    ax1.legend()
    ax2.plot([h["step"] for h in train_rows], [h["lr"] for h in train_rows])
    ax2.set_xlabel("step")
    ax2.set_ylabel("learning rate")
    ax2.set_title("Learning-rate schedule")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
