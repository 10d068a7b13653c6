"""What a training run learns: translation, language modelling, or classification.

The loop in training/loop.py is the same for all three (steps, validation, checkpoints,
exact resume, data parallelism). A Task supplies what differs between them:

  load(cfg)             the train/valid/test splits and a one-line description
  build(cfg, splits)    a ModelBundle: tokenizers, labels and a fresh model (or one started from
                        a pretrained language model: cfg.init_from); a translator's
                        max_len may come from the data (cfg.max_len 0: lengths.py)
  encode(items, ...)    splits -> examples (token id lists), and how many were cut
  length(example)       the padded length an example needs (for token-budget batches)
  collate(examples)     a batching.Batch
  validate(...)         a validation's log fields (valid_loss, bleu, ...) and a line
  report(...), score(...)   the test-split lines of `npformer train`; `npformer eval`
  command, presets, ...     its training command, help, examples and presets; its model
                        class and how it is served (translate / generate / classify)

                translate                lm                        classify
  data          sentence pairs           lines of text             (text, label) pairs
  model         Transformer              LanguageModel             Classifier
  batch         src, tgt_in, tgt_out     tgt_in, tgt_out           src = ids, labels
  loss over     target tokens            next tokens               examples
  best.npz by   (BLEU + exact match) / 2 validation loss           accuracy
                (or one of them, or loss)                          (or validation loss)

Which validation score picks best.npz is cfg.best_by (config.BEST_BY); the
loop compares `selection_score(fields, rule)`, higher is better.

Each task is one file (translate.py, lm.py, classify.py); TASKS below is the one
registry the loop and the CLI read: a new task is a new file and one line here.
"""
from .classify import ClassificationTask, accuracy, confusion_matrix, format_confusion
from ..models.bundle import ModelBundle
from .common import (SCORES, architecture_of, best_by, pretrained_checkpoint,
                     pretrained_conflicts, selection_score, with_architecture_of)
from .lm import LanguageModelTask
from .translate import TranslationTask

TASKS = {task.name: task for task in (TranslationTask(), LanguageModelTask(),
                                      ClassificationTask())}
# What the registry tells the CLI: each task's command, presets and model class.
PRESETS = {name: preset for task in TASKS.values() for name, preset in task.presets.items()}
COMMAND_PRESETS = {task.command: tuple(task.presets) for task in TASKS.values()}
COMMAND_TASKS = {task.command: task.name for task in TASKS.values()}
TASK_OF_MODEL = {task.model_class: task for task in TASKS.values()}
