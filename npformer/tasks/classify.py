"""Classification: (text, label) pairs -> a classifier, from scratch or from a pretrained LM's body.

Shapes: B batch, T text length, K classes.
  data     (text, label) pairs: a toy task (acceptability, ...) or a user's .tsv file
  model    Classifier (models/classifier.py)
  batch    src (B,T) = [BOS] ids [EOS], labels (B,): the loss is over examples
  best.npz by accuracy (or validation loss)
"""
import numpy as np

from ..data import (CORPORA, DataError, TASKS as CLASSIFICATION_TASKS, load_labelled_tsv,
                    make_task, split_pairs)
from ..models import build_model
from ..tokenizers import BOS_ID, EOS_ID, PAD_ID, make_tokenizers
from ..training.batching import Batch, bucket_batches
from ..training.config import DEFAULT_LABELLED
from ..models.bundle import ModelBundle
from .common import pretrained_checkpoint, start_from, with_architecture_of
from . import evaluation  # (evaluation.validation_loss: the fault tests patch it there)


class ClassificationTask:
    """(text, label) pairs -> a classifier; from scratch or from a pretrained LM's body."""

    name = "classify"
    unit = "examples"
    two_vocabularies = False
    legacy_best_by = "accuracy"
    command = "finetune"
    command_help = "fine-tune a pretrained LM as a classifier (or train one from scratch)"
    command_description = ("Train a classifier: a new head on a pretrained language model's "
                           "body (--from), the same architecture from scratch (--from ... "
                           "--scratch true), or a small model of its own (no --from).")
    command_examples = ("npformer finetune --from runs/lm/best.npz --task acceptability",
                        "npformer finetune --from runs/lm/best.npz --scratch true --out-dir "
                        "runs/ft0",
                        "npformer finetune --from runs/lm/best.npz --data reviews.tsv "
                        "--body-lr-scale 0.3",
                        "npformer finetune --task plural_subject --body encoder-only")
    flag_aliases = {"init_from": ["--from"], "data": ["--task"]}
    init_flag = "--from"
    model_class = "Classifier"
    model_name = "classifier"
    serve = 'classify --model {} "<a sentence>"'
    serve_commands = "classify, eval"
    # Fine-tuning a classifier (by default on the toy acceptability task); with
    # --init-from the architecture comes from the pretrained model. The head reads the
    # text's last token: a pretrained LM never read EOS as an input (layers/pooling.py)
    presets = {"classify": dict(task="classify", data="acceptability", max_len=64,
                                pooling="before_eos", max_tokens=2048, lr=1e-3,
                                warmup_steps=30, max_steps=400, max_minutes=3.0,
                                eval_every=100, label_smoothing=0.0, out_dir="runs/classify")}

    builtins = tuple(CLASSIFICATION_TASKS)

    def builtin(self, data):
        return data in self.builtins

    def load(self, cfg):
        if cfg.data in CLASSIFICATION_TASKS:
            n = cfg.data_size or DEFAULT_LABELLED
            return (make_task(cfg.data, n_train=n, seed=cfg.data_seed),
                    f"toy task {cfg.data} ({n} labelled training examples)")
        if cfg.data in CORPORA:
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
                note = start_from(cfg, model, ("decoder",))
            return ModelBundle(model, lm.src_tokenizer, lm.src_tokenizer, labels, note)
        vocab = cfg.vocab_size or None  # None: every token seen (bpe: its default size)
        texts = [t for t, _ in splits["train"]]
        tok, _ = make_tokenizers(texts, texts, kind=cfg.tokenizer, vocab_size=vocab, shared=True)
        model = build_model(cfg.model_config(tok.vocab_size, tok.vocab_size, len(labels)))
        return ModelBundle(model, tok, tok, labels, "")

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

    read_file = staticmethod(load_labelled_tsv)

    def score(self, built, items, cfg, beam=1, show=0):
        """`npformer eval`: (notes, lines, report) for a classifier on (text, label) pairs."""
        examples, _ = self.encode(items, built, cfg)
        notes = []
        unknown = sorted({label for _, label in items} - set(built.labels))
        if unknown:  # encode leaves them out: the model cannot predict them
            message = (f"{len(items) - len(examples)} examples have labels the model "
                       f"does not know ({', '.join(unknown[:5])}); its labels are "
                       f"{', '.join(built.labels)}")
            if not examples:
                raise DataError(message)
            notes.append(f"{message}; they are left out")
        matrix = confusion_matrix(built.model, examples, cfg.max_tokens, self)
        acc = float(np.trace(matrix) / max(matrix.sum(), 1))
        lines = [f"{'examples':<14} {int(matrix.sum())}\n{'accuracy':<14} {100 * acc:.2f}%\n"
                 f"{format_confusion(matrix, built.labels)}"]
        report = {"accuracy": acc, "n": int(matrix.sum()), "labels": built.labels,
                  "confusion": matrix.tolist()}
        return notes, lines, report

    def dropped_note(self, dropped, n_used, cfg, from_data):
        return f"note: {dropped} training texts were cut to max_len={cfg.max_len}"

    def lr_scale(self, model, cfg):
        """Fine-tuning: {key: learning-rate factor} of the body (all but the head)."""
        factor = 0.0 if cfg.freeze_body else cfg.body_lr_scale
        return {key: factor for key in model.params if not key.startswith("head.")}

    def data_facts(self, items, n_used, n_left_out, built):
        return None

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
        return Batch(src, None, None, B, labels)

    def validate(self, built, cfg, valid_examples, valid_items):
        vloss = evaluation.validation_loss(built.model, valid_examples, cfg.max_tokens, self)
        acc = accuracy(built.model, valid_examples, cfg.max_tokens, self)
        fields = {"valid_loss": vloss, "accuracy": acc}
        return fields, f"loss {vloss:.3f}, accuracy {100 * acc:.1f}%"

    def report(self, built, cfg, test_items):
        examples, _ = self.encode(test_items, built, cfg)
        matrix = confusion_matrix(built.model, examples, cfg.max_tokens, self)
        acc = np.trace(matrix) / max(matrix.sum(), 1)
        return [f"test split ({matrix.sum()} examples, best checkpoint): accuracy "
                f"{100 * acc:.1f}%", format_confusion(matrix, built.labels)]


def confusion_matrix(model, examples, max_tokens, task):
    """counts[true label, predicted label] over encoded (ids, label) examples. Shapes: (K,K)"""
    K = model.config.n_classes
    counts = np.zeros((K, K), dtype=np.int64)
    for idx in bucket_batches(examples, max_tokens, seed=0, epoch=0, shuffle=False,
                              length=task.length):
        batch = task.collate([examples[i] for i in idx])
        predicted = model.forward(batch.src).argmax(axis=1)  # (B,K) -> (B,)
        np.add.at(counts, (batch.labels, predicted), 1)
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
