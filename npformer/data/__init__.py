"""Data: toy corpora, loaders for user files, and the language-model side.

The built-in toy corpus, symbol tasks, loaders for user files, toy text,
classification tasks, grammar checker, entropy floor and the generator's exact
next-token distribution (next_token.py), in-context-learning prompts and few-shot
suffix rules.
(The SCAN command corpus, used by a benchmark only, is in npformer/devtools/.)
"""
from .baselines import logistic_regression_accuracy, majority_accuracy, naive_bayes_accuracy
from .classify import TASKS, load_labelled_tsv, make_task
from .entropy import entropy_floor, line_logprob, sentence_logprob, text_nll
from .grammar import (
    Ungrammatical,
    is_grammatical_english,
    is_grammatical_mixed,
    is_grammatical_velan,
    parse_english,
    parse_velan,
    why_not_english,
    why_not_velan,
)
from .icl import evaluate_icl, make_icl_prompts, make_icl_text
from .next_token import line_next_token_distributions, next_token_distribution
from .io import DataError, LoadResult, load_parallel, load_tsv, save_tsv, split_pairs
from .suffixes import make_suffix_prompts, make_suffix_text
from .text import TOY_TEXTS, load_text, make_toy_text
from .toy import CORPORA, make_copy_task, make_reverse_task, make_toy_corpus, toy_sentence_pair

__all__ = [
    "CORPORA", "TOY_TEXTS", "make_toy_corpus", "make_copy_task", "make_reverse_task", "toy_sentence_pair",
    "load_tsv", "load_parallel", "save_tsv", "split_pairs", "DataError", "LoadResult",
    # language models
    "make_toy_text", "load_text",
    "TASKS", "make_task", "load_labelled_tsv",
    "majority_accuracy", "naive_bayes_accuracy", "logistic_regression_accuracy",
    "is_grammatical_english", "is_grammatical_velan", "is_grammatical_mixed",
    "why_not_english", "why_not_velan", "parse_english", "parse_velan", "Ungrammatical",
    "entropy_floor", "sentence_logprob", "line_logprob", "text_nll",
    "next_token_distribution", "line_next_token_distributions",
    "make_suffix_text", "make_suffix_prompts",
    "make_icl_text", "make_icl_prompts", "evaluate_icl",
]
