"""Translation data: the built-in toy corpus, symbol tasks, and loaders for user files."""
from .io import DataError, LoadResult, load_parallel, load_tsv, save_tsv, split_pairs
from .toy import make_copy_task, make_reverse_task, make_toy_corpus, toy_sentence_pair

__all__ = [
    "make_toy_corpus", "make_copy_task", "make_reverse_task", "toy_sentence_pair",
    "load_tsv", "load_parallel", "save_tsv", "split_pairs", "DataError", "LoadResult",
]
