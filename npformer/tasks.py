"""What a training run learns: translation, language modelling, or classification.

The loop in train.py is the same for all three (steps, validation, checkpoints,
exact resume, data parallelism). A Task supplies what differs between them:

  load(cfg)             the train/valid/test splits and a one-line description
  build(cfg, splits)    tokenizers, labels and a fresh model (or one started from
                        a pretrained language model: cfg.init_from); a translator's
                        max_len may come from the data (cfg.max_len 0: lengths.py)
  encode(items, ...)    splits -> examples (token id lists), and how many were cut
  length(example)       the padded length an example needs (for token-budget batches)
  collate(examples)     a batching.Batch
  validate(...)         a validation's log fields (valid_loss, bleu, ...) and a line

                translate                lm                        classify
  data          sentence pairs           lines of text             (text, label) pairs
  model         Transformer              LanguageModel             Classifier
  batch         src, tgt_in, tgt_out     tgt_in, tgt_out           src = ids, tgt_out = labels
  loss over     target tokens            next tokens               examples
  best.npz by   (BLEU + exact match) / 2 validation loss           accuracy
                (or one of them, or loss)                          (or validation loss)

Which validation score picks best.npz is cfg.best_by (config.BEST_BY); the
loop compares `selection_score(fields, rule)`, higher is better.
"""
import math
from functools import partial
from typing import NamedTuple

import numpy as np

from .batching import Batch, bucket_batches, collate, encode_pairs, pair_length
from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint_meta
from .config import BEST_BY, DEFAULT_LABELLED, DEFAULT_TEXT_TOKENS, ConfigError, ModelConfig
from .data import (DataError, TASKS as CLASSIFICATION_TASKS, load_labelled_tsv, load_parallel,
                   load_text, load_tsv, make_copy_task, make_icl_text, make_reverse_task,
                   make_suffix_text, make_task, make_toy_corpus, make_toy_text, split_pairs)
from .evaluation import evaluate, validation_loss
from .lengths import batch_mib, choose_max_len
from .model import build_model
from .pretrained import load_pretrained
from .tokenizers import BOS_ID, EOS_ID, PAD_ID, make_tokenizers


class Built(NamedTuple):
    """What `Task.build` returns: the model and what turns text into its ids."""

    model: object
    src_tokenizer: object
    tgt_tokenizer: object  # the same object as src_tokenizer for lm and classify
    labels: list  # class names (classify), else []
    note: str  # e.g. "started from runs/lm/best.npz (54 weights)"


def pretrained_checkpoint(cfg):
    """The language model named by cfg.init_from (a Checkpoint)."""
    try:
        ckpt = load_checkpoint(cfg.init_from)
    except CheckpointError as err:
        raise ConfigError(f"init_from={cfg.init_from!r}: {err}") from None
    if ckpt.model.config.kind != "decoder-only" or ckpt.model.config.n_classes:
        raise ConfigError(f"init_from={cfg.init_from!r}: not a pretrained language model "
                          f"(it is a {ckpt.model.config.kind} model"
                          f"{' classifier' if ckpt.model.config.n_classes else ''}); "
                          "make one with: npformer pretrain")
    return ckpt


def architecture_of(model_cfg):
    """The TrainConfig fields that say how a model is shaped, read from its ModelConfig."""
    return {"d_model": model_cfg.d_model, "n_heads": model_cfg.n_heads, "d_ff": model_cfg.d_ff,
            "n_layers": max(model_cfg.n_encoder_layers, model_cfg.n_decoder_layers),
            "max_len": model_cfg.max_len, "activation": model_cfg.activation,
            "norm_position": model_cfg.norm_position, "positional": model_cfg.positional,
            "tie_output": model_cfg.tie_output, "shared_vocab": model_cfg.share_embeddings}


def with_architecture_of(cfg, model_cfg):
    """`cfg` with a model's architecture (sizes, norms, positions).

    A run started from a pretrained LM takes the LM's; after building, a run records
    what it built (so a saved configuration never disagrees with its model). This
    run's dropout, head and optimisation settings stay.
    """
    return cfg.replace(**architecture_of(model_cfg))


def pretrained_conflicts(given, init_from):
    """Options given explicitly that a run started from `init_from` could not honour.

    given: {TrainConfig field: value} of the flags on the command line. A run started
    from a pretrained LM takes its architecture and its tokenizer, so a flag that asks
    for another one is a contradiction, not a wish to drop silently. Returns a list of
    "--flag VALUE (the LM has X)" strings; an unreadable init_from gives [] (the run
    reports it when it loads the LM).
    """
    try:
        meta = read_checkpoint_meta(init_from)
        lm = ModelConfig.from_dict(meta["model_config"])
    except (CheckpointError, ConfigError):
        return []
    have = architecture_of(lm)
    have["tokenizer"] = meta["src_tokenizer"].get("type")
    have["shared_vocab"] = True  # a translator started from an LM has its one vocabulary
    conflicts = [(name, value, have[name]) for name, value in given.items()
                 if name in have and value != have[name]]
    if given.get("vocab_size") not in (None, 0, lm.src_vocab_size):
        conflicts.append(("vocab_size", given["vocab_size"], lm.src_vocab_size))
    return [f"--{name.replace('_', '-')} {value} (the LM has {lm_value})"
            for name, value, lm_value in conflicts]


def _start_from(cfg, model, parts):
    """Copy the pretrained LM's weights into a fresh model; returns a note."""
    ckpt = pretrained_checkpoint(cfg)
    try:
        copied = load_pretrained(model, ckpt.model, parts)
    except ValueError as err:
        raise ConfigError(f"init_from={cfg.init_from!r}: {err}") from None
    return f"started from {cfg.init_from} ({len(copied)} of {len(model.params)} weights)"


def _split_lines(lines, cfg, source):
    """Shuffle a user's lines into train/valid/test (equal lines stay in one split)."""
    splits = split_pairs([(line, "") for line in lines], cfg.valid_frac, cfg.test_frac,
                         seed=cfg.data_seed)
    return {k: [line for line, _ in v] for k, v in splits.items()}, f"{source}: {len(lines)} lines"


def _split_stream(text, cfg, source):
    """One stream of text -> train/valid/test documents: its start, then the next parts.

    Held-out text is the end of the stream, as for one long book (a shuffle of lines
    would not be one stream); each cut moves forward to the next whitespace, so no
    word is split. An empty part gives an empty split.
    """
    n = len(text)

    def cut(frac):
        i = int(n * frac)
        while i < n and not text[i].isspace():
            i += 1
        return i

    a, b = cut(1 - cfg.valid_frac - cfg.test_frac), cut(1 - cfg.test_frac)
    parts = {"train": text[:a], "valid": text[a:b], "test": text[b:]}
    return ({k: [part.strip()] if part.strip() else [] for k, part in parts.items()},
            f"{source}: one stream of {n:,} characters")


class TranslationTask:
    """Sentence pairs -> an encoder-decoder translator, scored by BLEU and exact match."""

    name = "translate"
    unit = "tok"  # what Batch.n_tokens counts, for the progress line

    builtins = ("toy", "copy", "reverse")  # --data names that are not files

    def builtin(self, data):
        """Is `data` the name of a built-in corpus (not a file)?"""
        return data in self.builtins

    def load(self, cfg):
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

    def build(self, cfg, splits):
        if cfg.init_from:  # the LM's tokenizer on both sides, its weights in encoder/decoder
            lm = pretrained_checkpoint(cfg)
            tok = lm.src_tokenizer
            model = build_model(with_architecture_of(cfg, lm.model.config).replace(
                shared_vocab=True).model_config(tok.vocab_size, tok.vocab_size))
            note = _start_from(cfg, model, cfg.init_parts.split(","))
            return Built(model, tok, tok, [], note)
        vocab = cfg.vocab_size or (8000 if cfg.tokenizer == "bpe" else None)
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
        return Built(model, src_tok, tgt_tok, [], note)

    def encode(self, items, built, cfg):
        return encode_pairs(items, built.src_tokenizer, built.tgt_tokenizer, cfg.max_len)

    length = staticmethod(pair_length)
    collate = staticmethod(collate)

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
        vloss = validation_loss(built.model, valid_examples, cfg.max_tokens, self)
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


TOY_TEXTS = {"toy": "mixed", "toy-mixed": "mixed", "toy-english": "english",
             "toy-velan": "velan"}


class LanguageModelTask:
    """Lines of text -> a decoder-only LM trained to predict the next token."""

    name = "lm"
    unit = "tok"

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
            return _split_stream(load_text(cfg.data, mode="whole")[0], cfg, cfg.data)
        return _split_lines(load_text(cfg.data, mode=cfg.text_mode), cfg, cfg.data)

    def build(self, cfg, splits):
        vocab = cfg.vocab_size or (8000 if cfg.tokenizer == "bpe" else None)
        tok, _ = make_tokenizers(splits["train"], splits["train"], kind=cfg.tokenizer,
                                 vocab_size=vocab, shared=True)
        model = build_model(cfg.model_config(tok.vocab_size, tok.vocab_size))
        return Built(model, tok, tok, [], "")

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
        vloss = validation_loss(built.model, valid_examples, cfg.max_tokens, self)
        fields = {"valid_loss": vloss, "perplexity": math.exp(min(vloss, 50.0))}
        return fields, f"loss {vloss:.3f}, perplexity {fields['perplexity']:.2f}"

    def report(self, built, cfg, test_items):
        from .decoding import continue_text

        examples, _ = self.encode(test_items, built, cfg)
        loss = validation_loss(built.model, examples, cfg.max_tokens, self)
        lines = [f"test split ({len(test_items)} lines, best checkpoint): loss {loss:.3f} "
                 f"nats/token, perplexity {math.exp(min(loss, 50.0)):.2f}"]
        for ids in continue_text(built.model, [], max_new_tokens=40, temperature=0.8, rng=0,
                                 n=3):
            lines.append(f"  sample: {built.src_tokenizer.decode(ids)}")
        return lines




class ClassificationTask:
    """(text, label) pairs -> a classifier; from scratch or from a pretrained LM's body."""

    name = "classify"
    unit = "examples"

    builtins = tuple(CLASSIFICATION_TASKS)

    def builtin(self, data):
        return data in self.builtins

    def load(self, cfg):
        if cfg.data in CLASSIFICATION_TASKS:
            n = cfg.data_size or DEFAULT_LABELLED
            return (make_task(cfg.data, n_train=n, seed=cfg.data_seed),
                    f"toy task {cfg.data} ({n} labelled training examples)")
        if cfg.data in ("toy", "copy", "reverse"):
            raise DataError(f"{cfg.data}: not a classification task; choose one of "
                            f"{', '.join(CLASSIFICATION_TASKS)} or a text<TAB>label .tsv file")
        pairs = load_labelled_tsv(cfg.data)
        splits = split_pairs(pairs, cfg.valid_frac, cfg.test_frac, seed=cfg.data_seed)
        return splits, f"{cfg.data}: {len(pairs)} labelled examples"

    def build(self, cfg, splits):
        labels = sorted({label for _, label in splits["train"]})
        if len(labels) < 2:
            raise DataError(f"{cfg.data}: the training split has {len(labels)} label(s); a "
                            "classifier needs at least two")
        if cfg.init_from:
            lm = pretrained_checkpoint(cfg)
            lm_cfg = lm.model.config
            model_cfg = with_architecture_of(cfg, lm_cfg).model_config(
                lm.src_tokenizer.vocab_size, lm.src_tokenizer.vocab_size, len(labels))
            model = build_model(model_cfg)
            if cfg.scratch:  # the baseline: same architecture and tokenizer, fresh weights
                note = f"architecture and tokenizer of {cfg.init_from}, fresh weights (scratch)"
            else:
                note = _start_from(cfg, model, ("decoder",))
            return Built(model, lm.src_tokenizer, lm.src_tokenizer, labels, note)
        vocab = cfg.vocab_size or (8000 if cfg.tokenizer == "bpe" else None)
        texts = [t for t, _ in splits["train"]]
        tok, _ = make_tokenizers(texts, texts, kind=cfg.tokenizer, vocab_size=vocab, shared=True)
        model = build_model(cfg.model_config(tok.vocab_size, tok.vocab_size, len(labels)))
        return Built(model, tok, tok, labels, "")

    def encode(self, items, built, cfg):
        """[BOS] + tokens + [EOS] and the label's index; longer texts are cut (and counted)."""
        index = {label: i for i, label in enumerate(built.labels)}
        max_tokens = built.model.config.max_len - 2
        examples, cut = [], 0
        for text, label in items:
            if label not in index:
                continue  # a label the training split never had: it cannot be predicted
            ids = built.src_tokenizer.encode(text)
            cut += len(ids) > max_tokens
            examples.append(([BOS_ID] + ids[:max_tokens] + [EOS_ID], index[label]))
        return examples, cut

    @staticmethod
    def length(example):
        return len(example[0])

    @staticmethod
    def collate(examples):
        B, T = len(examples), max(len(ids) for ids, _ in examples)
        src = np.full((B, T), PAD_ID, dtype=np.int64)
        for i, (ids, _) in enumerate(examples):
            src[i, : len(ids)] = ids
        labels = np.array([label for _, label in examples], dtype=np.int64)
        return Batch(src, None, labels, B)

    def validate(self, built, cfg, valid_examples, valid_items):
        vloss = validation_loss(built.model, valid_examples, cfg.max_tokens, self)
        acc = accuracy(built.model, valid_examples, cfg.max_tokens, self)
        fields = {"valid_loss": vloss, "accuracy": acc}
        return fields, f"loss {vloss:.3f}, accuracy {100 * acc:.1f}%"

    def report(self, built, cfg, test_items):
        examples, _ = self.encode(test_items, built, cfg)
        matrix = confusion_matrix(built.model, examples, cfg.max_tokens, self)
        acc = np.trace(matrix) / max(matrix.sum(), 1)
        return [f"test split ({matrix.sum()} examples, best checkpoint): accuracy "
                f"{100 * acc:.1f}%", format_confusion(matrix, built.labels)]


# What each best_by rule compares (higher is better) and calls itself in messages.
SCORES = {"bleu_exact": (lambda fields: (fields["bleu"] + 100 * fields["exact_match"]) / 2,
                         "mean of BLEU and exact match"),
          "valid_loss": (lambda fields: -fields["valid_loss"], "validation loss"),
          "bleu": (lambda fields: fields["bleu"], "BLEU"),
          "exact_match": (lambda fields: fields["exact_match"], "exact match"),
          "accuracy": (lambda fields: fields["accuracy"], "accuracy")}


def best_by(cfg):
    """The rule that picks best.npz: cfg.best_by, or the task's default (config.BEST_BY)."""
    return cfg.best_by or BEST_BY[cfg.task][0]


def selection_score(fields, rule):
    """A validation's score under `rule` (a config.BEST_BY name); higher is better."""
    return SCORES[rule][0](fields)


def confusion_matrix(model, examples, max_tokens, task):
    """counts[true label, predicted label] over encoded (ids, label) examples. Shapes: (K,K)"""
    K = model.config.n_classes
    counts = np.zeros((K, K), dtype=np.int64)
    for idx in bucket_batches(examples, max_tokens, seed=0, epoch=0, shuffle=False,
                              length=task.length):
        batch = task.collate([examples[i] for i in idx])
        predicted = model.forward(batch.src).argmax(axis=1)  # (B,K) -> (B,)
        np.add.at(counts, (batch.tgt_out, predicted), 1)
    return counts


def accuracy(model, examples, max_tokens, task):
    """Share of examples whose most probable class is the label."""
    matrix = confusion_matrix(model, examples, max_tokens, task)
    return float(np.trace(matrix) / max(matrix.sum(), 1))


def format_confusion(matrix, labels):
    """The confusion matrix as a text table: rows are the true labels."""
    width = max(8, *(len(label) for label in labels)) + 1
    head = "true \\ predicted".ljust(width + 2) + "".join(x.rjust(width) for x in labels)
    rows = [head] + [f"  {label.ljust(width)}" + "".join(str(c).rjust(width) for c in row)
                     for label, row in zip(labels, matrix)]
    return "\n".join(rows)


TASKS = {task.name: task for task in (TranslationTask(), LanguageModelTask(),
                                      ClassificationTask())}
