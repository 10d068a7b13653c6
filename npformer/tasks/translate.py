"""Translation: sentence pairs -> an encoder-decoder translator, scored by BLEU and exact match.

Shapes: B batch, S source len, T target len.
  data     (source, target) sentence pairs: toy, copy, reverse, or a user's files
  model    Transformer (models/transformer.py)
  batch    src (B,S), tgt_in (B,T), tgt_out (B,T): the loss is over target tokens
  best.npz by the mean of BLEU and exact match (or one of them, or validation loss)
"""
from functools import partial

from ..data import CORPORA, load_parallel, load_tsv, split_pairs
from ..models import build_model
from ..tokenizers import make_tokenizers
from ..training.batching import collate, encode_pairs, pair_length
from ..training.lengths import batch_mib, choose_max_len
from ..models.bundle import ModelBundle
from .common import pretrained_checkpoint, start_from, with_architecture_of
from . import evaluation  # (evaluation.validation_loss: the fault tests patch it there)
from .evaluation import evaluate


class TranslationTask:
    """Sentence pairs -> an encoder-decoder translator, scored by BLEU and exact match."""

    name = "translate"
    unit = "tok"  # what Batch.n_tokens counts, for the progress line
    two_vocabularies = True  # a source and a target tokenizer
    legacy_best_by = "bleu"  # the rule of runs saved before best_by existed
    # the command that trains it, and how the CLI names, finds and serves its model
    command = "train"
    command_help = "train a translator (default: the built-in toy, about 70 s)"
    command_description = ("Train an encoder-decoder transformer. With no arguments it trains "
                           "the built-in toy English->Velan translator.")
    command_examples = ("npformer train", "npformer train --preset copy",
                        "npformer train --preset tsv --data pairs.tsv --max-minutes 10",
                        "npformer train --data train.de --tgt-file train.en --tokenizer bpe",
                        "npformer train --resume --out-dir runs/toy --max-minutes 5",
                        "npformer train --init-from runs/lm/best.npz --out-dir runs/toy-from-lm")
    flag_aliases = {}  # TrainConfig field -> more flags for it
    init_flag = "--init-from"
    model_class = "Transformer"
    model_name = "translator"
    serve = 'translate --model {} "<a sentence>"'
    serve_commands = "translate, eval"
    # Presets: named starting points; explicit flags override them; the first is the default.
    presets = {
        "toy": {},  # the defaults: built-in toy translator, word tokenizer, ~70 s
        "copy": dict(data="copy", out_dir="runs/copy", max_steps=800, max_minutes=1.0,
                     eval_every=200, warmup_steps=100),
        "reverse": dict(data="reverse", out_dir="runs/reverse", max_steps=1500, max_minutes=1.5,
                        eval_every=300, warmup_steps=100),
        # your own corpus: shared BPE word parts, a 3+3-layer d_model 128 model (a d_model
        # 256 one manages only ~250 steps in 10 CPU minutes), a schedule that needs no
        # total step count, so the time budget decides the length, and max_len from the
        # data (0: training/lengths.py), so that no pair is silently left out. The run is
        # short (~900 steps), so a high peak rate reached early pays: on Multi30k lr 4e-3
        # after 200 warm-up steps beats 2e-3 after 400 at equal steps (docs/performance.md)
        "tsv": dict(tokenizer="bpe", vocab_size=4000, shared_vocab=True, d_model=128, n_heads=4,
                    d_ff=512, n_layers=3, max_len=0, max_tokens=3072, lr=4e-3,
                    schedule="inverse_sqrt", warmup_steps=200, max_steps=100000,
                    max_minutes=10.0, eval_every=500, out_dir="runs/tsv"),
    }

    builtins = tuple(CORPORA)  # --data names that are not files

    def builtin(self, data):
        """Is `data` the name of a built-in corpus (not a file)?"""
        return data in self.builtins

    def load(self, cfg):
        if cfg.data in CORPORA:
            make, description = CORPORA[cfg.data]
            return make(seed=cfg.data_seed), description
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

    def build(self, cfg, splits):
        if cfg.init_from:  # the LM's tokenizer on both sides, its weights in encoder/decoder
            lm = pretrained_checkpoint(cfg)
            tok = lm.src_tokenizer
            model = build_model(with_architecture_of(cfg, lm.model.config).replace(
                shared_vocab=True).model_config(tok.vocab_size, tok.vocab_size))
            note = start_from(cfg, model, cfg.init_parts.split(","))
            return ModelBundle(model, tok, tok, [], note)
        vocab = cfg.vocab_size or None  # None: every token seen (bpe: its default size)
        src_tok, tgt_tok = make_tokenizers([s for s, _ in splits["train"]],
                                           [t for _, t in splits["train"]], kind=cfg.tokenizer,
                                           vocab_size=vocab, shared=cfg.shared_vocab)
        max_len, note = cfg.max_len, ""
        if max_len == 0:  # from the data (lengths.py), now that the tokenizers exist
            lengths = [pair_length((src_tok.encode(s), tgt_tok.encode(t)))
                       for s, t in splits["train"]]
            memory = partial(batch_mib, max_tokens=cfg.max_tokens, d_model=cfg.d_model,
                             n_heads=cfg.n_heads, d_ff=cfg.d_ff, n_layers=cfg.n_layers,
                             vocab_size=tgt_tok.vocab_size)
            choice = choose_max_len(lengths, memory)
            max_len, note = choice.max_len, choice.describe()
        model = build_model(cfg.model_config(src_tok.vocab_size, tgt_tok.vocab_size,
                                             max_len=max_len))
        return ModelBundle(model, src_tok, tgt_tok, [], note)

    def encode(self, items, built, cfg):
        return encode_pairs(items, built.src_tokenizer, built.tgt_tokenizer, cfg.max_len)

    length = staticmethod(pair_length)
    collate = staticmethod(collate)

    @staticmethod
    def read_file(path):
        """The items of a user's file (`npformer eval --data FILE`)."""
        return load_tsv(path).pairs

    def score(self, built, items, cfg, beam=1, show=0):
        """`npformer eval`: (notes, lines, report) for a translator on (source, reference) pairs."""
        kw = {"beam_size": beam} if beam > 1 else {}
        result = evaluate(built.model, built.src_tokenizer, built.tgt_tokenizer, items,
                          method="beam" if beam > 1 else "greedy", **kw)
        decoding = f"beam {beam}" if beam > 1 else "greedy"
        lines = [f"{'sentences':<14} {result['n']}\n{'decoding':<14} {decoding}\n"
                 f"{'BLEU':<14} {result['bleu']:.2f}\n{'exact match':<14} "
                 f"{100 * result['exact_match']:.2f}%"]
        for (src, ref), hyp in list(zip(items, result["hypotheses"]))[:show]:
            mark = "=" if hyp == ref else "x"
            lines.append(f"[{mark}] {src}\n    ref: {ref}\n    hyp: {hyp}")
        report = {"decoding": decoding, "bleu": result["bleu"],
                  "exact_match": result["exact_match"], "n": result["n"],
                  "sentences": [{"source": s, "reference": r, "hypothesis": h}
                                for (s, r), h in zip(items, result["hypotheses"])]}
        return [], lines, report

    def dropped_note(self, dropped, n_used, cfg, from_data):
        """The log line for training pairs longer than max_len (left out of training)."""
        return left_out_warning(dropped, n_used + dropped, cfg.max_len, from_data)

    def lr_scale(self, model, cfg):
        """Per-key learning-rate factors (None: every weight at the full rate)."""
        return None

    def data_facts(self, items, n_used, n_left_out, built):
        """log.jsonl facts about the training pairs: how many are used, tokens per word."""
        facts = {"pairs_used": n_used, "pairs_left_out": n_left_out,
                 "left_out_share": n_left_out / max(n_used + n_left_out, 1)}
        for side, tok, i in (("src", built.src_tokenizer, 0), ("tgt", built.tgt_tokenizer, 1)):
            words = sum(len(pair[i].split()) for pair in items)
            tokens = sum(len(tok.encode(pair[i])) for pair in items)
            facts[f"{side}_tokens_per_word"] = tokens / max(words, 1)
        return facts

    def validate(self, built, cfg, valid_examples, valid_items):
        vloss = evaluation.validation_loss(built.model, valid_examples, cfg.max_tokens, self)
        result = evaluate(built.model, built.src_tokenizer, built.tgt_tokenizer,
                          valid_items[: cfg.eval_sentences])
        fields = {"valid_loss": vloss, "bleu": result["bleu"],
                  "exact_match": result["exact_match"]}
        line = (f"loss {vloss:.3f}, BLEU {result['bleu']:.1f}, exact match "
                f"{100 * result['exact_match']:.1f}% ({result['n']} sentences)")
        return fields, line

    def report(self, built, cfg, test_items):
        """Lines describing the model on the test split (npformer train prints them)."""
        result = evaluate(built.model, built.src_tokenizer, built.tgt_tokenizer, test_items)
        lines = [f"test split ({result['n']} sentences, best checkpoint, greedy): "
                 f"BLEU {result['bleu']:.2f}, exact match {100 * result['exact_match']:.1f}%"]
        for (src, ref), hyp in list(zip(test_items, result["hypotheses"]))[:3]:
            lines.append(f"  source:     {src}\n  reference:  {ref}\n  model:      {hyp}")
        return lines


def left_out_warning(dropped, n_pairs, max_len, from_data):
    """The warning line for training pairs longer than max_len (left out of training)."""
    fix = ("max_len was chosen from the data within a memory bound (the line above); a "
           "larger --max-len keeps them, at more memory per batch" if from_data else
           "raise --max-len, or give --max-len 0 to choose it from the data")
    return (f"warning: {dropped:,} of {n_pairs:,} training pairs ({100 * dropped / n_pairs:.1f}%) "
            f"need more than max_len={max_len} tokens (incl. BOS/EOS) and are left out: the "
            f"model never learns them; {fix}")
