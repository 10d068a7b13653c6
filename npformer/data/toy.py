"""A built-in toy translation corpus (English-like -> "Velan") and symbol tasks.

Nothing is downloaded: sentences are generated from a seed. Every source
sentence has exactly one correct translation, so exact match is meaningful.
Full rules and examples: docs/toy_corpus.md.

Velan grammar (what the model has to learn):
1. Verb-final clauses. Source "SUBJ VERB OBJ PP ." becomes
   target "SUBJ PP OBJ VERB ." (the prepositional phrase moves before the object).
2. Postpositions: "in the house" -> "la domo ne" (ne = in, after its noun).
3. Articles agree in gender: every noun is masculine (lo) or feminine (la);
   the gender is arbitrary and must be memorised per noun. "a"/"an"/"some" vanish.
4. Adjectives follow the noun, in reverse order, and agree in gender:
   "the big red dog" -> "lo kan rubo grando" (feminine noun: "ruba granda").
5. Plural is a separate token "ta" right after the noun: "the dogs" -> "lo kan ta".
6. Verbs agree with the subject's number: sg ending -e, pl ending -en
   ("sees" -> vide, "see" -> viden). In "does not see" the number is only
   visible on the subject, so the model must look back at it.
7. Negation: "does not / do not VERB" -> "nu VERB" ("does"/"do" vanish).
8. Length changes: some nouns become two target words (teacher -> "sabi mun"),
   two-word verbs become one ("looks at" -> mire).
9. Reported speech: "SUBJ says that CLAUSE ." -> "SUBJ CLAUSE ke SAYVERB ."
   (the main verb moves to the very end, after the whole inner clause).

Sentences have 4 to 14 source tokens (the final "." is a token).
"""
import random

# --- lexicon ----------------------------------------------------------------
# Nouns: (source singular, source plural, target, gender). Target nouns do not
# change for number; gender "m" takes article lo, "f" takes la.
# How often each kind of line is drawn in "mixed" toy text (text.py draws the lines,
# entropy.py computes their entropy).
MIXED_WEIGHTS = {"english": 0.35, "velan": 0.35, "pair": 0.30}

ANIMATE_NOUNS = [
    ("man", "men", "om", "m"), ("woman", "women", "fema", "f"),
    ("boy", "boys", "puer", "m"), ("girl", "girls", "pela", "f"),
    ("child", "children", "kin", "f"), ("teacher", "teachers", "sabi mun", "f"),
    ("doctor", "doctors", "kura mun", "m"), ("farmer", "farmers", "agro mun", "m"),
    ("student", "students", "lern mun", "f"), ("king", "kings", "reg", "m"),
    ("queen", "queens", "regi", "f"), ("friend", "friends", "ami", "f"),
    ("cat", "cats", "gato", "f"), ("dog", "dogs", "kan", "m"),
    ("horse", "horses", "ekva", "m"), ("bird", "birds", "avi", "f"),
    ("mouse", "mice", "mus", "f"), ("fox", "foxes", "vulpo", "m"),
    ("cow", "cows", "bova", "f"), ("wolf", "wolves", "lupo", "m"),
    ("bear", "bears", "urs", "m"), ("rabbit", "rabbits", "kuni", "f"),
]
THING_NOUNS = [
    ("apple", "apples", "poma", "f"), ("book", "books", "libro", "m"),
    ("letter", "letters", "skrib papir", "m"), ("ball", "balls", "bol", "f"),
    ("cup", "cups", "tasi", "f"), ("bread", "breads", "pan", "m"),
    ("key", "keys", "klav", "f"), ("box", "boxes", "kest", "m"),
    ("hat", "hats", "kapel", "m"), ("chair", "chairs", "sed", "f"),
    ("table", "tables", "mensa", "f"), ("car", "cars", "auto", "m"),
    ("boat", "boats", "navi", "f"), ("flower", "flowers", "flori", "f"),
    ("stone", "stones", "petr", "m"), ("song", "songs", "kanto", "m"),
    ("picture", "pictures", "pint", "f"), ("bicycle", "bicycles", "du rota", "f"),
]
PLACE_NOUNS = [
    ("house", "houses", "domo", "f"), ("garden", "gardens", "hort", "m"),
    ("river", "rivers", "flu", "m"), ("forest", "forests", "silva", "f"),
    ("city", "cities", "urba", "f"), ("school", "schools", "lern domo", "m"),
    ("park", "parks", "parko", "m"), ("kitchen", "kitchens", "kuko", "f"),
    ("village", "villages", "vilo", "m"), ("market", "markets", "merk", "m"),
    ("mountain", "mountains", "monta", "f"), ("lake", "lakes", "lag", "m"),
    ("field", "fields", "agro", "m"),
]
# Adjectives: source -> target stem; the target adds -o (masc.) or -a (fem.).
ADJECTIVES = {
    "big": "grand", "small": "pik", "old": "vek", "young": "jun", "red": "rub",
    "blue": "blu", "green": "verd", "black": "nigr", "white": "alb", "happy": "fel",
    "sad": "trist", "tall": "alt", "fast": "rapid", "slow": "lent", "good": "bon",
    "bad": "mal", "new": "nov", "beautiful": "bel", "hungry": "fam", "clever": "sag",
    "quiet": "kiet", "angry": "ir",
}
# Verbs: (source 3rd-person singular, source plain form, target stem); the
# target adds -e (singular subject) or -en (plural subject).
TRANSITIVE_VERBS = [
    ("sees", "see", "vid"), ("likes", "like", "am"), ("eats", "eat", "manj"),
    ("finds", "find", "trov"), ("has", "have", "hav"), ("wants", "want", "vol"),
    ("carries", "carry", "port"), ("takes", "take", "pren"), ("buys", "buy", "kompr"),
    ("sells", "sell", "vend"), ("paints", "paint", "pinj"), ("follows", "follow", "sekv"),
    ("helps", "help", "aid"), ("knows", "know", "kon"), ("holds", "hold", "ten"),
    ("watches", "watch", "spekt"), ("opens", "open", "aper"), ("breaks", "break", "romp"),
    ("washes", "wash", "lav"),
    # two source words -> one target word
    ("looks at", "look at", "mir"), ("waits for", "wait for", "atend"),
    ("talks about", "talk about", "diskut"), ("listens to", "listen to", "aud"),
]
INTRANSITIVE_VERBS = [
    ("sleeps", "sleep", "dorm"), ("runs", "run", "kur"), ("sings", "sing", "kant"),
    ("dances", "dance", "dans"), ("swims", "swim", "nat"), ("laughs", "laugh", "rid"),
    ("sits", "sit", "sid"), ("works", "work", "labor"), ("plays", "play", "lud"),
    ("cries", "cry", "plor"), ("walks", "walk", "marsh"),
]
SAY_VERBS = [
    ("says", "say", "dik"), ("thinks", "think", "pens"),
    ("believes", "believe", "kred"), ("hopes", "hope", "esper"),
]
# Prepositions: source -> (target postposition, nouns it can take).
PREPOSITIONS = {
    "in": ("ne", PLACE_NOUNS), "near": ("pres", PLACE_NOUNS),
    "behind": ("dor", PLACE_NOUNS + THING_NOUNS), "under": ("sub", THING_NOUNS),
    "on": ("sur", THING_NOUNS), "with": ("kun", ANIMATE_NOUNS),
    "from": ("de", PLACE_NOUNS),
}
ARTICLES = {"m": "lo", "f": "la"}
PLURAL_MARKER, NEGATION, COMPLEMENTIZER = "ta", "nu", "ke"

MAX_LEN = 14  # longest source sentence in tokens, "." included
# Sentence shapes and how often each is drawn.
TEMPLATE_WEIGHTS = {"intransitive": 0.15, "intransitive_pp": 0.15,
                    "transitive": 0.25, "transitive_pp": 0.25, "reported": 0.20}
P_NEGATED = 0.2  # per clause
P_PLURAL = 0.35  # per noun phrase
ADJECTIVE_COUNT_WEIGHTS = (0.55, 0.30, 0.15)  # 0, 1 or 2 adjectives
P_DEFINITE = 0.6  # "the" versus "a"/"an"/"some"

# Fixed orders for drawing (sorted so that draws never depend on dict order).
_ADJECTIVE_LIST = sorted(ADJECTIVES)
_PREPOSITION_LIST = sorted(PREPOSITIONS)
_TEMPLATE_NAMES = list(TEMPLATE_WEIGHTS)
_TEMPLATE_CUM_WEIGHTS = [sum(list(TEMPLATE_WEIGHTS.values())[:k + 1])
                         for k in range(len(TEMPLATE_WEIGHTS))]
_OBJECT_NOUNS = ANIMATE_NOUNS + THING_NOUNS


# --- generation ---------------------------------------------------------------
def _noun_phrase(rng, nouns):
    """Random noun phrase -> (source words, target words, is_plural)."""
    sg, pl, tgt_noun, gender = rng.choice(nouns)
    plural = rng.random() < P_PLURAL
    r = rng.random()  # picks 0, 1 or 2 adjectives with ADJECTIVE_COUNT_WEIGHTS
    if r < ADJECTIVE_COUNT_WEIGHTS[0]:
        adjectives = []
    elif r < ADJECTIVE_COUNT_WEIGHTS[0] + ADJECTIVE_COUNT_WEIGHTS[1]:
        adjectives = [rng.choice(_ADJECTIVE_LIST)]
    else:
        adjectives = rng.sample(_ADJECTIVE_LIST, 2)  # two different ones
    words = adjectives + [pl if plural else sg]
    if rng.random() < P_DEFINITE:
        src_det, tgt_det = ["the"], [ARTICLES[gender]]
    elif plural:
        src_det, tgt_det = ["some"], []  # Velan has no indefinite article
    else:
        src_det, tgt_det = ["an" if words[0][0] in "aeiou" else "a"], []
    src = src_det + words
    tgt = tgt_det + tgt_noun.split() + ([PLURAL_MARKER] if plural else [])
    ending = "o" if gender == "m" else "a"
    tgt += [ADJECTIVES[a] + ending for a in reversed(adjectives)]
    return src, tgt, plural


def _verb(verb, plural_subject, negated):
    """Source and target words for a verb in its clause."""
    sg, plain, stem = verb
    tgt = ([NEGATION] if negated else []) + [stem + ("en" if plural_subject else "e")]
    if negated:
        src = ["do" if plural_subject else "does", "not"] + plain.split()
    else:
        src = (plain if plural_subject else sg).split()
    return src, tgt


def _clause(rng, kind):
    """One clause without the final "." -> (source words, target words)."""
    subj_src, subj_tgt, plural = _noun_phrase(rng, ANIMATE_NOUNS)
    transitive = kind.startswith("transitive")
    verbs = TRANSITIVE_VERBS if transitive else INTRANSITIVE_VERBS
    verb_src, verb_tgt = _verb(rng.choice(verbs), plural, rng.random() < P_NEGATED)
    obj_src, obj_tgt = [], []
    if transitive:
        obj_src, obj_tgt, _ = _noun_phrase(rng, _OBJECT_NOUNS)
    pp_src, pp_tgt = [], []
    if kind.endswith("_pp"):
        prep = rng.choice(_PREPOSITION_LIST)
        postposition, nouns = PREPOSITIONS[prep]
        np_src, np_tgt, _ = _noun_phrase(rng, nouns)
        pp_src, pp_tgt = [prep] + np_src, np_tgt + [postposition]
    src = subj_src + verb_src + obj_src + pp_src
    tgt = subj_tgt + pp_tgt + obj_tgt + verb_tgt
    return src, tgt


def toy_sentence_pair(rng):
    """Draw one (source, target) pair of the toy language using `rng` (random.Random)."""
    while True:
        kind = rng.choices(_TEMPLATE_NAMES, cum_weights=_TEMPLATE_CUM_WEIGHTS)[0]
        if kind == "reported":
            subj_src, subj_tgt, plural = _noun_phrase(rng, ANIMATE_NOUNS)
            verb_src, verb_tgt = _verb(rng.choice(SAY_VERBS), plural, rng.random() < P_NEGATED)
            inner_src, inner_tgt = _clause(rng, rng.choice(["intransitive", "transitive"]))
            src = subj_src + verb_src + ["that"] + inner_src
            tgt = subj_tgt + inner_tgt + [COMPLEMENTIZER] + verb_tgt
        else:
            src, tgt = _clause(rng, kind)
        if len(src) + 1 <= MAX_LEN:
            return " ".join(src + ["."]), " ".join(tgt + ["."])


def _unique_splits(draw, n_train, n_valid, n_test, seed):
    """Draw pairs until there are enough distinct sources, then split them.

    Sources are distinct across all splits, so no test sentence is in train.
    """
    for name, n in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test)):
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{name} must be a non-negative int, got {n!r}")
    rng = random.Random(seed)
    total = n_train + n_valid + n_test
    pairs = {}  # source -> target; a dict keeps insertion order
    max_draws = 50 * total + 1000
    draws = 0
    while len(pairs) < total:
        src, tgt = draw(rng)
        if pairs.setdefault(src, tgt) != tgt:
            raise AssertionError(f"two translations for {src!r}: a bug in the grammar")
        draws += 1
        if draws > max_draws:
            raise ValueError(
                f"could only make {len(pairs)} distinct pairs, {total} were asked for")
    items = list(pairs.items())
    return {"train": items[:n_train],
            "valid": items[n_train:n_train + n_valid],
            "test": items[n_train + n_valid:]}


def make_toy_corpus(n_train=40000, n_valid=1000, n_test=1000, seed=0):
    """The toy English-like -> Velan corpus, deterministic given the seed.

    Returns {"train", "valid", "test"} lists of (source, target) strings.
    """
    return _unique_splits(toy_sentence_pair, n_train, n_valid, n_test, seed)


# --- symbol tasks for sanity checks --------------------------------------------
def _symbol_task(transform, n_train, n_valid, n_test, seed, n_symbols, min_len, max_len):
    if not 1 <= n_symbols <= 26:
        raise ValueError(f"n_symbols must be in 1..26, got {n_symbols}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    symbols = [chr(ord("a") + k) for k in range(n_symbols)]

    def draw(rng):
        seq = rng.choices(symbols, k=rng.randint(min_len, max_len))
        return " ".join(seq), " ".join(transform(seq))

    return _unique_splits(draw, n_train, n_valid, n_test, seed)


def make_copy_task(n_train=10000, n_valid=500, n_test=500, seed=0,
                   n_symbols=20, min_len=4, max_len=12):
    """Random symbol strings ("c a f") whose target is the same string."""
    return _symbol_task(list, n_train, n_valid, n_test, seed, n_symbols, min_len, max_len)


def make_reverse_task(n_train=10000, n_valid=500, n_test=500, seed=0,
                      n_symbols=20, min_len=4, max_len=12):
    """Random symbol strings ("c a f") whose target is reversed ("f a c")."""
    return _symbol_task(lambda seq: seq[::-1], n_train, n_valid, n_test, seed,
                        n_symbols, min_len, max_len)


# The built-in translation corpora, by their --data name: (make(seed) -> splits, description)
CORPORA = {"toy": (make_toy_corpus, "built-in toy corpus (English -> Velan)"),
           "copy": (make_copy_task, "copy task"),
           "reverse": (make_reverse_task, "reverse task")}
