"""Read and write user translation data: TSV pairs or two line-aligned files.

Formats:
- TSV: one pair per line, "source<TAB>target[<TAB>anything else]" (the
  Tatoeba / manythings.org format; extra columns such as attribution are ignored).
- Parallel: two UTF-8 text files, line i of one translates line i of the other.

Lines are split on "\\n" only (a "\\r\\n" ending is accepted too), never on the
other Unicode line breaks that str.splitlines() knows about: a stray U+2028 in
one file would otherwise shift every later line and misalign the corpus.

Problems that mean "this is not the file you think it is" (a line without a
tab, unequal line counts, bytes that are not UTF-8) raise DataError naming the
file and line. Pairs with a blank side are merely skipped, and counted.
"""
import random
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """A data file that cannot be read as translation pairs (message names file and line)."""


@dataclass(frozen=True)
class LoadResult:
    """Pairs read from disk plus what was skipped and why.

    pairs: list of (source, target) strings, stripped of surrounding whitespace.
    skipped: number of lines dropped; by_reason: that number broken down
    ("blank line", "empty source", "empty target").
    """
    pairs: list
    skipped: int = 0
    by_reason: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.pairs)


def _read_lines(path):
    """Yield (line_number, text) for a UTF-8 file, line numbers from 1."""
    path = Path(path)
    try:
        if stat.S_ISCHR(path.stat().st_mode) or stat.S_ISBLK(path.stat().st_mode):
            raise DataError(f"{path}: a device, not a file of lines")  # /dev/zero never ends
        f = path.open("rb")
    except OSError as e:
        raise DataError(f"{path}: cannot open ({e.strerror})") from None
    with f:
        offset = 0  # byte offset of the current line in the file
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: not valid UTF-8 ({e.reason}) at byte {e.start} of the "
                    f"line (byte {offset + e.start} of the file); re-save the file as UTF-8"
                ) from None
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]  # byte-order mark written by some editors
            offset += len(raw)
            if text.endswith("\n"):
                text = text[:-1]
            if text.endswith("\r"):
                text = text[:-1]
            yield lineno, text


def _keep_pair(src, tgt, reasons):
    """True if both sides are non-blank; otherwise count the reason and return False."""
    if not src and not tgt:
        reasons["blank line"] += 1
    elif not src:
        reasons["empty source"] += 1
    elif not tgt:
        reasons["empty target"] += 1
    else:
        return True
    return False


def load_tsv(path, src_col=0, tgt_col=1):
    """Read "source<TAB>target[<TAB>...]" lines into a LoadResult.

    src_col/tgt_col pick other columns, e.g. 1 and 3 for Tatoeba's
    "id<TAB>text<TAB>id<TAB>text" export. A fully blank line is skipped; a
    non-blank line with too few columns raises DataError.
    """
    pairs, reasons = [], Counter()
    need = max(src_col, tgt_col) + 1
    for lineno, line in _read_lines(path):
        if not line.strip():
            reasons["blank line"] += 1
            continue
        cols = line.split("\t")
        if len(cols) < need:
            what = "no tab" if len(cols) == 1 else f"only {len(cols)} columns"
            raise DataError(
                f"{path}:{lineno}: expected source<TAB>target with at least {need} "
                f"tab-separated columns, found {what}: {line[:60]!r}")
        src, tgt = cols[src_col].strip(), cols[tgt_col].strip()
        if _keep_pair(src, tgt, reasons):
            pairs.append((src, tgt))
    return LoadResult(pairs, sum(reasons.values()), dict(reasons))


def _drop_trailing_blank(lines):
    """Remove (lineno, text) entries at the end whose text is blank."""
    while lines and not lines[-1][1].strip():
        lines.pop()
    return lines


def load_parallel(src_path, tgt_path):
    """Read two line-aligned files into a LoadResult; unequal line counts raise DataError.

    Blank lines at the very end of either file are ignored before comparing counts.
    """
    src_lines = _drop_trailing_blank(list(_read_lines(src_path)))
    tgt_lines = _drop_trailing_blank(list(_read_lines(tgt_path)))
    if len(src_lines) != len(tgt_lines):
        shorter, longer = (src_path, tgt_path) if len(src_lines) < len(tgt_lines) else (tgt_path, src_path)
        n = min(len(src_lines), len(tgt_lines))
        raise DataError(
            f"{src_path} has {len(src_lines)} lines but {tgt_path} has {len(tgt_lines)}; "
            f"{shorter} ends after line {n}, so line {n + 1} of {longer} has no partner")
    pairs, reasons = [], Counter()
    for (_, src), (_, tgt) in zip(src_lines, tgt_lines):
        src, tgt = src.strip(), tgt.strip()
        if _keep_pair(src, tgt, reasons):
            pairs.append((src, tgt))
    return LoadResult(pairs, sum(reasons.values()), dict(reasons))


def save_tsv(pairs, path):
    """Write (source, target) pairs as UTF-8 "source<TAB>target" lines."""
    lines = []
    for k, (src, tgt) in enumerate(pairs):
        for side, text in (("source", src), ("target", tgt)):
            if not isinstance(text, str):
                raise DataError(f"pair {k}: {side} is {type(text).__name__}, not str")
            if "\t" in text or "\n" in text or "\r" in text:
                raise DataError(f"pair {k}: {side} contains a tab or line break: {text[:60]!r}")
        lines.append(f"{src}\t{tgt}\n")
    Path(path).write_text("".join(lines), encoding="utf-8")


def split_pairs(pairs, valid_frac=0.05, test_frac=0.05, seed=0):
    """Shuffle pairs into {"train","valid","test"}; same seed, same split.

    Pairs sharing a source sentence always land in the same split (Tatoeba has
    many sources with several translations), so no test source is seen in training.
    Split sizes are therefore approximate when sources repeat.
    """
    for name, frac in (("valid_frac", valid_frac), ("test_frac", test_frac)):
        if not 0 <= frac < 1:
            raise ValueError(f"{name} must be in [0, 1), got {frac}")
    if valid_frac + test_frac >= 1:
        raise ValueError(f"valid_frac + test_frac must be below 1, got {valid_frac + test_frac}")
    groups = {}  # source -> its pairs, in first-seen order
    for src, tgt in pairs:
        groups.setdefault(src, []).append((src, tgt))
    sources = list(groups)
    random.Random(seed).shuffle(sources)
    n = len(pairs)
    splits = {"test": [], "valid": [], "train": []}
    targets = {"test": round(test_frac * n), "valid": round(valid_frac * n)}
    for src in sources:
        name = "train"
        for candidate in ("test", "valid"):
            if len(splits[candidate]) < targets[candidate]:
                name = candidate
                break
        splits[name].extend(groups[src])
    return {"train": splits["train"], "valid": splits["valid"], "test": splits["test"]}
