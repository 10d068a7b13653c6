"""Time byte-level BPE training (vocab 8000) on Multi30k, if it is available locally.

Usage: python benchmarks/bpe_speed.py [--data DIR] [--vocab-size N] [--long-line]

--long-line instead times encoding one line without spaces (the corpus with its
spaces removed: one pre-tokenizer chunk) of 100 kB and 1 MB, with the trained
tokenizer, and the definition's method (rescan for the earliest merge after each
one, `merge_pair`) on its first 10 kB and 30 kB: issue 24 measured it at about 18
minutes for 1 MB.

Reads DIR/train.en and DIR/train.de (29k sentence pairs; default DIR is
/work/shared/data/multi30k). Nothing is copied into the repository.

Corpora timed (source and target sentences pooled, as for a shared tokenizer):
  x1           the 29k pairs
  x2, x3       the pairs repeated: more words, but no new distinct words,
               so only the counting step gets slower
  x3-distinct  x3 where copies 2 and 3 have every word reversed / upper-cased:
               ~87k pairs with ~3x as many distinct words, a pessimistic
               stand-in for a real 75k-pair corpus
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from npformer.tokenizers import BPETokenizer  # noqa: E402
from npformer.tokenizers.bpe import BYTE_OFFSET, merge_pair, utf8_bytes  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/multi30k")


def variants(sentences):
    """(name, list of sentences) for each corpus size we time."""
    reversed_words = [" ".join(w[::-1] for w in s.split()) for s in sentences]
    upper = [s.upper() for s in sentences]
    return [
        ("x1", sentences),
        ("x2", sentences * 2),
        ("x3", sentences * 3),
        ("x3-distinct", sentences + reversed_words + upper),
    ]


def rescan_encode(tok, chunk):
    """The method before issue 24: after each merge, rescan the chunk for the earliest one."""
    ids = [b + BYTE_OFFSET for b in utf8_bytes(chunk)]
    while len(ids) >= 2:
        pairs = [p for p in zip(ids, ids[1:]) if p in tok._ranks]
        if not pairs:
            break
        best = min(pairs, key=tok._ranks.__getitem__)
        ids = merge_pair(ids, best, tok._ranks[best])
    return ids


def time_long_line(tok, sentences):
    """CPU seconds to encode a line without spaces, by size and method."""
    letters = "".join("".join(s.split()) for s in sentences)
    print(f"encoding one line without spaces (vocab {tok.vocab_size}); CPU seconds")
    print(f"{'bytes':>9} {'method':<22} {'cpu s':>7} {'tokens':>8}")
    for size in (100_000, 1_000_000):
        line = letters[:size]
        start = time.process_time()
        ids = tok.encode(line)
        print(f"{len(line.encode()):>9} {'apply_merges (heap)':<22} "
              f"{time.process_time() - start:>7.2f} {len(ids):>8}", flush=True)
    for size in (10_000, 30_000):
        line = letters[:size]
        start = time.process_time()
        ids = rescan_encode(tok, line)
        assert ids == tok.encode(line)
        print(f"{len(line.encode()):>9} {'rescan (before)':<22} "
              f"{time.process_time() - start:>7.2f} {len(ids):>8}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train.en/train.de")
    parser.add_argument("--vocab-size", type=int, default=8000, help="BPE vocabulary size")
    parser.add_argument("--long-line", action="store_true",
                        help="time encoding a 100 kB and a 1 MB line without spaces")
    args = parser.parse_args()

    paths = [args.data / "train.en", args.data / "train.de"]
    if not all(p.exists() for p in paths):
        print(f"Multi30k not found at {args.data}; nothing to time.")
        return
    sentences = []
    for p in paths:
        sentences += p.read_text(encoding="utf-8").splitlines()
    n_pairs = len(sentences) // 2
    if args.long_line:
        time_long_line(BPETokenizer.train(sentences, vocab_size=args.vocab_size), sentences)
        return

    print(f"BPE training, vocab {args.vocab_size}, Multi30k train ({n_pairs} pairs, en+de pooled)")
    print(f"{'corpus':<12} {'pairs':>7} {'words':>9} {'train s':>8} {'cpu s':>7} {'encode s':>9}")
    for name, texts in variants(sentences):
        n_words = sum(len(s.split()) for s in texts)
        wall, cpu = time.perf_counter(), time.process_time()
        tok = BPETokenizer.train(texts, vocab_size=args.vocab_size)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        start = time.perf_counter()
        for s in texts:
            tok.encode(s)
        encode = time.perf_counter() - start
        print(f"{name:<12} {len(texts) // 2:>7} {n_words:>9} {wall:>8.2f} {cpu:>7.2f} {encode:>9.2f}")


if __name__ == "__main__":
    main()
