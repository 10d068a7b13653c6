"""The generator's own next-token distribution: p(x_t | x_<t) of the toy text, exactly.

A language model learns p(next token | text so far). For the toy text we know the
program that wrote it (npformer/data/toy.py, text.py), so the distribution it
should learn is computable, at every position of every line, and a model's
distribution can be set beside it (notebook 10: the KL divergence per position).

How. A line is a sequence of choices (line kind, template, and per noun phrase,
verb and prepositional phrase a few structural choices and a word). Given the
structure, the words are independent uniform draws; and the English length,
which decides whether the generator keeps the draw (at most toy.MAX_LEN tokens),
depends on the structure alone. So `next_token_distribution` walks the line in
the order its tokens are written (`_program`), one phrase ("slot") at a time:

  1. at each slot, branch over its structural choices (number of adjectives,
     plural, definite, negation, one- or two-word verb, preposition), each with
     its probability and the English tokens it adds;
  2. walk the slot's words left to right, keeping only the words the prefix
     shows, so a long prefix leaves one branch (the parse) or a few;
  3. where the prefix ends, every branch adds its probability to the token it
     would write next, times the probability that the rest of the line keeps the
     draw within toy.MAX_LEN English tokens (`_rest_within`: a small sum over the
     remaining slots' structural choices, memoised).

The sum over branches of step 3 is P(prefix, next token) up to the constant Z of
the length rejection, which cancels when the masses are normalised. A pair line
`ENGLISH = VELAN` is an English line until "="; after it the Velan half is fixed
(`velan_of`), so the next token is certain.

Velan is written in a different order from the one the generator draws in
(subject, postpositional phrase, object, verb), and an article before a noun
depends on the noun's gender: each slot factors its joint distribution in
writing order (P(article) = the share of nouns of that gender, then the noun
uniformly within the gender), which is the same distribution.

The chain rule ties this to npformer/data/entropy.py: the product over a line of
p(x_t | x_<t), with the end of line, is exp(line_logprob(line)) (tests/test_lm_data.py).
"""
import math
from functools import cache

from . import toy
from .grammar import Ungrammatical, parse_english
from .toy import MIXED_WEIGHTS
from .text import PAIR_SEPARATOR

END = "<eos>"  # the end-of-line token (the tokenizers' EOS) as a key of the distribution
_ADJECTIVES = sorted(toy.ADJECTIVES)
_OBJECT_NOUNS = toy.ANIMATE_NOUNS + toy.THING_NOUNS
_VERBS = {"transitive": toy.TRANSITIVE_VERBS, "intransitive": toy.INTRANSITIVE_VERBS,
          "say": toy.SAY_VERBS}


# --- the line as slots, in writing order -------------------------------------------------
# A slot is a tuple: ("np", role, noun set) | ("pp", role) | ("verb", role, verb kind)
#                    | ("word", token, English tokens it stands for)
# role names the clause ("main" or "inner") so that a verb agrees with its subject;
# a noun set is a key of _NOUN_SETS (a prepositional phrase's nouns follow its preposition).
def _program(language, template):
    """The slots of one template, in the order `language` writes them."""
    subj = ("np", "main", "animate")
    if template.startswith("reported_"):  # _templates splits "reported" by its inner clause
        inner = template[len("reported_"):]
        inner_slots = [("np", "inner", "animate"), ("verb", "inner", inner)]
        if inner == "transitive":
            inner_slots.insert(1 if language == "velan" else 2, ("np", "object", "object"))
        if language == "english":  # SUBJ SAYS that CLAUSE .
            return (subj, ("verb", "main", "say"), ("word", "that", 1), *inner_slots,
                    ("word", ".", 1))
        return (subj, *inner_slots, ("word", toy.COMPLEMENTIZER, 1), ("verb", "main", "say"),
                ("word", ".", 1))  # SUBJ CLAUSE ke SAYVERB .
    kind = "transitive" if template.startswith("transitive") else "intransitive"
    obj = [("np", "object", "object")] if kind == "transitive" else []
    pp = [("pp", "pp")] if template.endswith("_pp") else []
    if language == "english":  # SUBJ VERB OBJ PP .
        return (subj, ("verb", "main", kind), *obj, *pp, ("word", ".", 1))
    return (subj, *pp, *obj, ("verb", "main", kind), ("word", ".", 1))  # SUBJ PP OBJ VERB .


def _templates():
    """(template, probability): the reported template split by its inner clause (1/2 each)."""
    out = []
    for name, weight in toy.TEMPLATE_WEIGHTS.items():
        if name == "reported":
            out += [("reported_intransitive", weight / 2), ("reported_transitive", weight / 2)]
        else:
            out.append((name, weight))
    return out


_NOUN_SETS = {"animate": toy.ANIMATE_NOUNS, "object": _OBJECT_NOUNS}


# --- structural choices of each slot: (probability, English tokens, choice) -----------------
def _np_structures():
    """(probability, English tokens, (adjectives, plural, definite)) of one noun phrase."""
    out = []
    for n_adj, w_adj in enumerate(toy.ADJECTIVE_COUNT_WEIGHTS):
        for plural in (False, True):
            for definite in (False, True):
                p = (w_adj * (toy.P_PLURAL if plural else 1 - toy.P_PLURAL)
                     * (toy.P_DEFINITE if definite else 1 - toy.P_DEFINITE))
                out.append((p, 2 + n_adj, (n_adj, plural, definite)))
    return out


def _verb_structures(kind):
    """(probability, English tokens, (negated, English words of the verb)) of one verb."""
    verbs = _VERBS[kind]
    out = []
    for n_words in sorted({len(v[0].split()) for v in verbs}):
        share = sum(len(v[0].split()) == n_words for v in verbs) / len(verbs)
        for negated in (False, True):
            p = share * (toy.P_NEGATED if negated else 1 - toy.P_NEGATED)
            out.append((p, n_words + 2 * negated, (negated, n_words)))
    return out


def _slot_structures(slot):
    """The structural choices of a slot (a list of (probability, English tokens, choice))."""
    if slot[0] == "np":
        return _np_structures()
    if slot[0] == "pp":  # a preposition (uniform) and its noun phrase
        prepositions = sorted(toy.PREPOSITIONS)
        return [(p / len(prepositions), 1 + n, (prep, *choice))
                for prep in prepositions for p, n, choice in _np_structures()]
    if slot[0] == "verb":
        return _verb_structures(slot[2])
    return [(1.0, slot[2], None)]  # a fixed word


@cache
def _length_distribution(slots):
    """{English tokens: probability} of the slots' structural choices together."""
    dist = {0: 1.0}
    for slot in slots:
        new = {}
        for n, p in dist.items():
            for q, m, _ in _slot_structures(slot):
                new[n + m] = new.get(n + m, 0.0) + p * q
        dist = new
    return dist


def _rest_within(language, template, i, used):
    """P(the slots from i on keep the line within toy.MAX_LEN English tokens | `used` so far)."""
    rest = _length_distribution(_program(language, template)[i:])
    return sum(p for n, p in rest.items() if used + n <= toy.MAX_LEN)


# --- words of each slot, given its structure --------------------------------------------
# A slot's words are spelled as "layers" of choices, left to right; a layer is a function
# (labels chosen so far) -> [(tokens, probability, label)]. _spell walks them along the prefix.
def _spell(rest, layers):
    """Walk the layers along `rest` (the prefix from the slot's start).

    Returns ({tokens consumed: probability} of the spellings that end within the prefix,
    {next token: probability} of those the prefix ends inside).
    """
    complete, frontier = {}, {}

    def walk(k, pos, p, labels):
        if k == len(layers):
            complete[pos] = complete.get(pos, 0.0) + p
            return
        for tokens, q, label in layers[k](labels):
            n = min(len(rest) - pos, len(tokens))
            if tuple(rest[pos:pos + n]) != tokens[:n]:
                continue  # the prefix shows another word
            if n < len(tokens):  # the prefix ends here: this option's next token
                frontier[tokens[n]] = frontier.get(tokens[n], 0.0) + p * q
            else:
                walk(k + 1, pos + n, p * q, labels + (label,))

    walk(0, 0, 1.0, ())
    return complete, frontier


def _uniform(items, tokens_of):
    """A layer's options: each item with probability 1/len(items)."""
    return [(tokens_of(item), 1.0 / len(items), item) for item in items]


def _english_np_layers(nouns, n_adj, plural, definite):
    """det, adjectives (ordered, distinct, uniform), noun; "a"/"an" follows the next word."""
    forms = [n[1] if plural else n[0] for n in nouns]

    def det(word):
        if definite:
            return "the"
        if plural:
            return "some"
        return "an" if word[0] in "aeiou" else "a"

    first = _ADJECTIVES if n_adj else forms
    layers = [lambda labels: _uniform(first, lambda w: (det(w), w))]
    if n_adj == 2:  # a second adjective, different from the first
        layers.append(lambda labels: _uniform([a for a in _ADJECTIVES if a != labels[-1]],
                                              lambda a: (a,)))
    if n_adj:
        layers.append(lambda labels: _uniform(forms, lambda w: (w,)))
    return layers


def _velan_np_layers(nouns, n_adj, plural, definite):
    """[article] noun [ta] adjectives (mirrored order, the noun's gender ending).

    The article depends on the noun's gender: written first, it is the noun's
    (gender's) share; the noun is drawn in the same step, so the joint is exact.
    """
    def head(entry):
        _, _, velan, gender = entry
        return tuple(([toy.ARTICLES[gender]] if definite else []) + velan.split()
                     + ([toy.PLURAL_MARKER] if plural else []))

    layers = [lambda labels: _uniform(nouns, head)]

    def adjective(labels):  # labels: the noun entry, then the adjectives written so far
        ending = "o" if labels[0][3] == "m" else "a"
        used = labels[1:]
        return _uniform([a for a in _ADJECTIVES if a not in used],
                        lambda a: (toy.ADJECTIVES[a] + ending,))

    layers += [adjective] * n_adj
    return layers


def _verb_layers(language, kind, negated, n_words, plural):
    """One layer: every verb of this kind and English length, in its agreeing form."""
    verbs = [v for v in _VERBS[kind] if len(v[0].split()) == n_words]

    def form(verb):
        sg, plain, stem = verb
        if language == "english":
            return (("do" if plural else "does", "not", *plain.split()) if negated
                    else tuple((plain if plural else sg).split()))
        return ((toy.NEGATION,) if negated else ()) + (stem + ("en" if plural else "e"),)

    return [lambda labels: _uniform(verbs, form)]


def _fixed(*tokens):
    return lambda labels: [(tokens, 1.0, None)]


def _layers(language, slot, choice, agree):
    """The layers that spell a slot with its structure chosen."""
    if slot[0] == "word":
        return [_fixed(slot[1])]
    if slot[0] == "verb":
        negated, n_words = choice
        return _verb_layers(language, slot[2], negated, n_words, agree[slot[1]])
    np_layers = _english_np_layers if language == "english" else _velan_np_layers
    if slot[0] == "np":
        return np_layers(_NOUN_SETS[slot[2]], *choice)
    prep, *np_choice = choice  # a prepositional phrase: English "in NP", Velan "NP ne"
    postposition, nouns = toy.PREPOSITIONS[prep]
    if language == "english":
        return [_fixed(prep)] + np_layers(nouns, *np_choice)
    return np_layers(nouns, *np_choice) + [_fixed(postposition)]


# --- the walk over the slots -----------------------------------------------------------------
class _Walk:
    """One prefix's walk over the slots of every template (module docstring); fills `mass`."""

    def __init__(self, language, prefix):
        self.language, self.prefix, self.mass = language, list(prefix), {}
        self._spelled = {}  # the same slot at the same place recurs across templates

    def _spell(self, slot, choice, agree, pos):
        """_spell of this slot at prefix position pos (memoised for this walk)."""
        plural = agree.get(slot[1]) if slot[0] == "verb" else None  # all a verb depends on
        key = (slot, choice, plural, pos)
        if key not in self._spelled:
            self._spelled[key] = _spell(self.prefix[pos:],
                                        _layers(self.language, slot, choice, agree))
        return self._spelled[key]

    def run(self, weight, after_end):
        """Add weight * P(prefix, next token) (up to Z) to `mass`, over the templates.

        after_end: [(token, probability)] of what follows a complete sentence.
        """
        for template, p in _templates():
            self._slot(template, 0, 0, 0, weight * p, {}, after_end)

    def _slot(self, template, i, pos, used, weight, agree, after_end):
        """Walk slot i of `template`: the prefix is read up to `pos`, `used` English tokens."""
        program, prefix = _program(self.language, template), self.prefix
        if i == len(program):  # the sentence is complete
            if pos == len(prefix):  # (a longer prefix does not fit this sentence)
                for token, p in after_end:
                    self._add(token, weight * p)
            return
        slot = program[i]
        for q, n, choice in _slot_structures(slot):
            if used + n > toy.MAX_LEN:
                continue  # the generator would draw again
            complete, frontier = self._spell(slot, choice, agree, pos)
            if frontier:
                within = _rest_within(self.language, template, i + 1, used + n)
                for token, p in frontier.items():
                    self._add(token, weight * q * p * within)
            if complete:
                new_agree = agree
                if slot[0] == "np" and slot[1] in ("main", "inner"):
                    new_agree = {**agree, slot[1]: choice[1]}  # choice = (adjectives, plural, ...)
                for consumed, p in complete.items():
                    self._slot(template, i + 1, pos + consumed, used + n, weight * q * p,
                               new_agree, after_end)

    def _add(self, token, mass):
        if mass > 0:
            self.mass[token] = self.mass.get(token, 0.0) + mass


def velan_of(english):
    """The Velan translation of an English toy sentence (as the generator writes it)."""
    s = parse_english(english)

    def phrase(np):
        _, _, velan, gender = np.noun
        ending = "o" if gender == "m" else "a"
        words = ([toy.ARTICLES[gender]] if np.definite else []) + velan.split()
        words += [toy.PLURAL_MARKER] if np.plural else []
        return words + [toy.ADJECTIVES[a] + ending for a in reversed(np.adjectives)]

    def verb(clause):
        return (([toy.NEGATION] if clause.negated else [])
                + [clause.verb[2] + ("en" if clause.subject.plural else "e")])

    def clause(c):
        words = phrase(c.subject)
        if c.preposition:
            words += phrase(c.pp_object) + [toy.PREPOSITIONS[c.preposition][0]]
        if c.object is not None:
            words += phrase(c.object)
        return words + verb(c)

    if s.reporter is None:
        return " ".join(clause(s.clause) + ["."])
    return " ".join(phrase(s.reporter.subject) + clause(s.clause) + [toy.COMPLEMENTIZER]
                    + verb(s.reporter) + ["."])


def next_token_distribution(prefix, kind="mixed"):
    """The generator's p(next token | prefix) for a line of make_toy_text(kind=...) text.

    prefix: the words so far (a string or a list of tokens; "" at the start of a line).
    Returns {token: probability}, the end of the line as END ("<eos>"); {} if the
    generator cannot write this prefix.
    """
    words = prefix.split() if isinstance(prefix, str) else list(prefix)
    if kind in ("english", "velan"):
        walk = _Walk(kind, words)
        walk.run(1.0, [(END, 1.0)])
        return _normalised(walk.mass)
    if kind != "mixed":
        raise ValueError(f"kind must be 'english', 'velan' or 'mixed', got {kind!r}")
    mass = {}
    if PAIR_SEPARATOR in words:  # a pair line past "=": the Velan half is fixed
        cut = words.index(PAIR_SEPARATOR)
        english, velan = " ".join(words[:cut]), words[cut + 1:]
        try:
            target = velan_of(english).split() + [END]
        except Ungrammatical:
            return {}
        if velan != target[:len(velan)] or len(velan) >= len(target):
            return {}
        return {target[len(velan)]: 1.0}
    english = _Walk("english", words)  # English lines and the English half of pair lines
    w_en, w_pair = MIXED_WEIGHTS["english"], MIXED_WEIGHTS["pair"]
    english.run(w_en + w_pair, [(END, w_en / (w_en + w_pair)),  # English line or pair line
                                (PAIR_SEPARATOR, w_pair / (w_en + w_pair))])
    velan = _Walk("velan", words)
    velan.run(MIXED_WEIGHTS["velan"], [(END, 1.0)])
    for walk in (english, velan):
        for token, m in walk.mass.items():
            mass[token] = mass.get(token, 0.0) + m
    return _normalised(mass)


def _normalised(mass):
    total = sum(mass.values())
    return {t: m / total for t, m in mass.items()} if total > 0 else {}


def line_next_token_distributions(line, kind="mixed"):
    """p(x_t | x_<t) at every position of a line, the end of the line included.

    Returns a list of len(line.split()) + 1 dicts: the i-th is the distribution of
    token i given tokens 0..i-1 (the last one's true answer is END).
    """
    words = line.split()
    return [next_token_distribution(words[:i], kind) for i in range(len(words) + 1)]


def distribution_entropy(dist):
    """Entropy in nats of a {token: probability} distribution."""
    return -sum(p * math.log(p) for p in dist.values() if p > 0)
