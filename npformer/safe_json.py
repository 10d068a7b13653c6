"""JSON from a file that may come from someone else, parsed only if its size can justify it.

`json.loads` builds every object of a document before anyone looks at it, and
Python objects are large: "[[],[],[]]" takes 3 bytes of text per list but 64 bytes
of memory, so 60 MB of such text (hidden in a field nobody reads) would ask for
1.4 GB. `loads` first bounds the memory the parse would take from the counts of
brackets, colons and commas (bytes.count: no parsing, no allocation) and refuses
the document when that bound exceeds the caller's limit.

The bound per character, from CPython 3.11 (sys.getsizeof; tracemalloc on lists,
dicts, numbers and strings: tests/test_loading_limits.py) and rounded up:
  {  a dict: 64 bytes empty          [  a list: 56 bytes + the first element's pointer
  :  one dict entry: 96 (its slot, and the old table while the dict grows)
  ,  one more element: 8 for the pointer, 28 for its value (an int), list growth
  "  half a string: 32 (a str object is 49 bytes + its characters)
plus twice the text (its decoded str, 1 byte a character if ASCII, else up to 4,
and the digits and characters of the numbers and strings made from it), + 4 kB.
The counts include characters inside strings, so they overcount, never under.
"""
import json

# The limit npformer's loaders give: a file's JSON may take 16 x the file's size once
# parsed (a long training log needs ~12 x its text by this bound, ~4 x in truth), and
# any file 1 MB (parse_cost alone adds 4 kB to the smallest document).
MEMORY_PER_FILE_BYTE = 16
MEMORY_FLOOR = 1 << 20


def file_limit(file_size):
    """The most memory the JSON of a file of `file_size` bytes may take once parsed."""
    return MEMORY_PER_FILE_BYTE * file_size + MEMORY_FLOOR

COST = {b"{": 64, b"[": 72, b":": 96, b",": 40, b'"': 32}  # bytes per character (above)


class JSONLimitError(ValueError):
    """A JSON document would take more memory to parse than its file can justify."""


def parse_cost(raw):
    """An upper bound on the memory (bytes) json.loads(raw) allocates. raw: bytes."""
    text = 2 * len(raw) if raw.isascii() else 5 * len(raw)
    return text + 4096 + sum(cost * raw.count(char) for char, cost in COST.items())


def loads(raw, limit, where):
    """json.loads(raw) if its parse_cost is at most `limit` bytes, else JSONLimitError.

    raw: UTF-8 bytes. Malformed JSON or UTF-8 raise ValueError (json.JSONDecodeError,
    UnicodeDecodeError); deep nesting raises RecursionError; each names nothing, so
    callers say where.
    """
    cost = parse_cost(raw)
    if cost > limit:
        raise JSONLimitError(f"{where}: a JSON document of {len(raw):,} bytes that would take "
                             f"about {cost:,} bytes of memory to read, more than its file "
                             f"can justify ({limit:,})")
    return json.loads(raw.decode("utf-8"))
