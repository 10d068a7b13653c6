"""Language modelling: lines (or one stream) of text -> a decoder-only LM that predicts each next token.

Shapes: B batch, T sequence length.
  data     lines of text: toy text (English, Velan, pairs), toy-icl, or a user's file
  model    LanguageModel (models/language_model.py)
  batch    tgt_in (B,T), tgt_out (B,T) = tgt_in shifted by one: the loss is over next tokens
  best.npz by validation loss
"""
import math

import numpy as np

from ..data import TOY_TEXTS, load_text, make_icl_text, make_suffix_text, make_toy_text
from ..models import build_model
from ..tokenizers import BOS_ID, EOS_ID, PAD_ID, make_tokenizers
from ..training.batching import Batch
from ..training.config import DEFAULT_TEXT_TOKENS
from ..models.bundle import ModelBundle
from .common import split_lines, split_stream
from . import evaluation  # (evaluation.validation_loss: the fault tests patch it there)




class LanguageModelTask:
    """Lines of text -> a decoder-only LM trained to predict the next token."""

    name = "lm"
    unit = "tok"
    two_vocabularies = False
    legacy_best_by = "valid_loss"
    command = "pretrain"
    command_help = "pretrain a decoder-only language model (next-token prediction)"
    command_description = ("Train a GPT-style language model to predict the next token. With "
                           "no arguments it pretrains on generated toy text (English, Velan and "
                           "'English = Velan' lines) in about 4 minutes.")
    command_examples = ("npformer pretrain", "npformer pretrain --data my_text.txt --tokenizer bpe",
                        "npformer pretrain --data toy-icl --out-dir runs/icl",
                        "npformer pretrain --resume --out-dir runs/lm")
    flag_aliases = {}
    init_flag = "--init-from"
    model_class = "LanguageModel"
    model_name = "language model"
    serve = 'generate --model {} "<a prompt>"'
    serve_commands = "generate, eval"
    # A decoder-only LM on generated toy text (English, Velan and "English = Velan" lines),
    # sized to reach its perplexity target within 5 CPU minutes (docs/language_models.md)
    presets = {"lm": dict(task="lm", data="toy", data_size=300_000, d_model=96, n_heads=4,
                          d_ff=384, n_layers=3, max_len=64, max_tokens=4096, lr=3e-3,
                          warmup_steps=100, max_steps=1000, max_minutes=4.2, eval_every=250,
                          dropout=0.1, label_smoothing=0.0, out_dir="runs/lm")}

    builtins = (*TOY_TEXTS, "toy-icl", "toy-suffix")

    def builtin(self, data):
        return data in self.builtins

    def load(self, cfg):
        size = cfg.data_size or DEFAULT_TEXT_TOKENS
        if cfg.data in TOY_TEXTS:
            kind = TOY_TEXTS[cfg.data]
            return (make_toy_text(size, kind=kind, seed=cfg.data_seed),
                    f"toy text ({kind}, {size:,} tokens)")
        if cfg.data == "toy-icl":  # mixed text plus few-shot task lines (notebook 12)
            text = make_toy_text(size, kind="mixed", seed=cfg.data_seed)
            icl = make_icl_text(n_lines=max(size // 40, 100), seed=cfg.data_seed)
            rng = np.random.default_rng(cfg.data_seed)
            train = text["train"] + icl["train"]
            order = rng.permutation(len(train))
            return ({"train": [train[i] for i in order], "valid": text["valid"] + icl["valid"],
                     "test": text["test"]}, f"toy text with in-context tasks ({size:,} tokens)")
        if cfg.data == "toy-suffix":  # a made-up suffix rule per line (notebook 12, with BPE)
            lines = make_suffix_text(n_lines=max(size // 20, 100), seed=cfg.data_seed)
            return lines, f"few-shot suffix-rule lines ({len(lines['train']):,} lines)"
        if cfg.text_mode == "whole":
            return split_stream(load_text(cfg.data, mode="whole")[0], cfg, cfg.data)
        return split_lines(load_text(cfg.data, mode=cfg.text_mode), cfg, cfg.data)

    def build(self, cfg, splits):
        vocab = cfg.vocab_size or None  # None: every token seen (bpe: its default size)
        tok, _ = make_tokenizers(splits["train"], splits["train"], kind=cfg.tokenizer,
                                 vocab_size=vocab, shared=True)
        model = build_model(cfg.model_config(tok.vocab_size, tok.vocab_size))
        return ModelBundle(model, tok, tok, [], "")

    def encode(self, items, built, cfg):
        """[BOS] + tokens + [EOS] of each line, cut into windows of max_len + 1 ids.

        A window w trains max_len predictions: input w[:-1], target w[1:]; windows
        overlap by one id, so no prediction is lost at a cut and no text is left out.
        """
        n = cfg.max_len
        examples, cut = [], 0
        for line in items:
            ids = [BOS_ID] + built.src_tokenizer.encode(line) + [EOS_ID]
            if len(ids) > n + 1:
                cut += 1
            for start in range(0, max(len(ids) - 1, 1), n):
                examples.append(ids[start: start + n + 1])
        return examples, cut

    read_file = staticmethod(load_text)

    def score(self, built, items, cfg, beam=1, show=0):
        """`npformer eval`: (notes, lines, report) for a language model on lines of text."""
        examples, _ = self.encode(items, built, cfg)
        loss = evaluation.validation_loss(built.model, examples, cfg.max_tokens, self)
        perplexity = float(np.exp(min(loss, 50.0)))
        lines = [f"{'lines':<14} {len(items)}\n{'loss':<14} {loss:.4f} nats/token\n"
                 f"{'perplexity':<14} {perplexity:.3f}"]
        return [], lines, {"loss": loss, "perplexity": perplexity, "n": len(items)}

    def dropped_note(self, dropped, n_used, cfg, from_data):
        return f"note: {dropped} training lines were cut into pieces of max_len={cfg.max_len}"

    def lr_scale(self, model, cfg):
        return None

    def data_facts(self, items, n_used, n_left_out, built):
        return None  # (nothing beyond the data line of the log)

    @staticmethod
    def length(example):
        return len(example) - 1

    @staticmethod
    def collate(examples):
        B, T = len(examples), max(len(w) for w in examples) - 1
        tgt_in = np.full((B, T), PAD_ID, dtype=np.int64)
        tgt_out = np.full((B, T), PAD_ID, dtype=np.int64)
        for i, w in enumerate(examples):
            tgt_in[i, : len(w) - 1] = w[:-1]
            tgt_out[i, : len(w) - 1] = w[1:]
        return Batch(None, tgt_in, tgt_out, sum(len(w) - 1 for w in examples))

    def validate(self, built, cfg, valid_examples, valid_items):
        vloss = evaluation.validation_loss(built.model, valid_examples, cfg.max_tokens, self)
        fields = {"valid_loss": vloss, "perplexity": math.exp(min(vloss, 50.0))}
        return fields, f"loss {vloss:.3f}, perplexity {fields['perplexity']:.2f}"

    def report(self, built, cfg, test_items):
        from ..models.decoding import continue_text

        examples, _ = self.encode(test_items, built, cfg)
        loss = evaluation.validation_loss(built.model, examples, cfg.max_tokens, self)
        lines = [f"test split ({len(test_items)} lines, best checkpoint): loss {loss:.3f} "
                 f"nats/token, perplexity {math.exp(min(loss, 50.0)):.2f}"]
        for ids in continue_text(built.model, [], max_new_tokens=40, temperature=0.8, rng=0,
                                 n=3):
            lines.append(f"  sample: {built.src_tokenizer.decode(ids)}")
        return lines
