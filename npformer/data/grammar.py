"""A parser for the toy grammar: which strings can npformer.data.toy generate?

`is_grammatical_english(s)` / `is_grammatical_velan(s)` accept exactly the
sentences that `toy.toy_sentence_pair` can produce (as source / as target), and
`is_grammatical_mixed(line)` also accepts "ENGLISH = VELAN" lines whose two
halves are translations of each other. Use them to score samples from a
language model: "the share of generated samples that the toy grammar accepts".

Both parsers return the same structure, a `Sentence` of generative choices
(template, noun phrases, verbs, negation). A Velan line translates an English
line exactly when their parses are equal, and the probability that the
generator draws a sentence is a product over these choices
(npformer.data.entropy.sentence_logprob). The grammar is unambiguous (every
word belongs to one category, see tests/test_toy_data.py), so the parsers never
backtrack: each reads the words left to right and rejects at the first word
that does not fit, with a reason (`why_not_english`, `why_not_velan`).
Grammar and rules: docs/toy_corpus.md.
"""
from typing import NamedTuple

from . import toy

# --- lexicon lookups (built once from toy.py, the one home of the words; the
# VELAN_* and other public tables are also what classify.py reads Velan with) -------
_ALL_NOUNS = toy.ANIMATE_NOUNS + toy.THING_NOUNS + toy.PLACE_NOUNS
_EN_NOUN = {}  # English word -> (noun entry, plural)
VELAN_NOUNS = {}  # first Velan word -> [(Velan words, noun entry)], longest first
for _entry in _ALL_NOUNS:
    _EN_NOUN[_entry[0]] = (_entry, False)
    _EN_NOUN[_entry[1]] = (_entry, True)
    VELAN_NOUNS.setdefault(_entry[2].split()[0], []).append((_entry[2].split(), _entry))
for _options in VELAN_NOUNS.values():
    _options.sort(key=lambda option: -len(option[0]))

_VERB_LISTS = {"transitive": toy.TRANSITIVE_VERBS, "intransitive": toy.INTRANSITIVE_VERBS,
               "say": toy.SAY_VERBS}
_VERB_KIND = {entry: kind for kind, verbs in _VERB_LISTS.items() for entry in verbs}
VELAN_VERBS = {}  # Velan verb form -> (verb entry, plural)
for _entry in _VERB_KIND:
    VELAN_VERBS[_entry[2] + "e"] = (_entry, False)
    VELAN_VERBS[_entry[2] + "en"] = (_entry, True)
VELAN_ADJECTIVES = {}  # Velan adjective form -> (English adjective, gender)
for _adjective, _stem in toy.ADJECTIVES.items():
    VELAN_ADJECTIVES[_stem + "o"] = (_adjective, "m")
    VELAN_ADJECTIVES[_stem + "a"] = (_adjective, "f")
POSTPOSITIONS = {post: prep for prep, (post, _) in toy.PREPOSITIONS.items()}
GENDER_OF_ARTICLE = {article: gender for gender, article in toy.ARTICLES.items()}


# --- the parse: the generator's choices, readable off either language ----------
class NounPhrase(NamedTuple):
    noun: tuple        # the lexicon entry (singular, plural, Velan, gender)
    plural: bool
    adjectives: tuple  # in English order
    definite: bool     # "the" / lo, la; otherwise a, an, some / no article


class Clause(NamedTuple):
    subject: NounPhrase
    verb: tuple        # the lexicon entry (3sg, plain, Velan stem)
    negated: bool
    object: NounPhrase | None
    preposition: str | None  # English preposition of the PP, None without a PP
    pp_object: NounPhrase | None


class Sentence(NamedTuple):
    template: str      # a key of toy.TEMPLATE_WEIGHTS
    clause: Clause     # the inner clause for "reported"
    reporter: Clause | None  # "SUBJ says": subject, say-verb and negation only


class Ungrammatical(ValueError):
    """The toy grammar cannot generate this string (the message says where and why)."""


def _fail(words, i, reason):
    at = f"word {i + 1} ({words[i]!r})" if i < len(words) else "the end"
    raise Ungrammatical(f"at {at}: {reason}")


def _word(words, i):
    return words[i] if i < len(words) else None


def english_length(sentence):
    """Number of English tokens ("." included) of a parsed sentence.

    The generator's MAX_LEN applies to this, for both languages.
    """
    def np_len(phrase):
        return 0 if phrase is None else 2 + len(phrase.adjectives)

    def clause_len(c):
        n = np_len(c.subject) + len(c.verb[1].split()) + (2 if c.negated else 0)
        n += np_len(c.object)
        return n + (1 + np_len(c.pp_object) if c.preposition else 0)

    n = clause_len(sentence.clause) + 1
    if sentence.reporter is not None:
        n += clause_len(sentence.reporter) + 1  # + "that"
    return n


def _check_adjectives(words, i, adjectives):
    if len(adjectives) > 2:
        _fail(words, i, "more than two adjectives")
    if len(adjectives) == 2 and adjectives[0] == adjectives[1]:
        _fail(words, i, "the same adjective twice")


def _check_noun(words, i, entry, nouns):
    if entry not in nouns:
        _fail(words, i, "this noun cannot stand here")


# --- English -----------------------------------------------------------------------
def _english_np(words, i, nouns):
    det = _word(words, i)
    if det not in ("the", "a", "an", "some"):
        _fail(words, i, "expected a determiner (the, a, an, some)")
    i += 1
    adjectives = []
    while _word(words, i) in toy.ADJECTIVES:
        adjectives.append(words[i])
        i += 1
    _check_adjectives(words, i, adjectives)
    if _word(words, i) not in _EN_NOUN:
        _fail(words, i, "expected a noun")
    entry, plural = _EN_NOUN[words[i]]
    _check_noun(words, i, entry, nouns)
    if det == "some" and not plural:
        _fail(words, i, "'some' needs a plural noun")
    if det in ("a", "an"):
        if plural:
            _fail(words, i, f"{det!r} needs a singular noun")
        first = (adjectives + [words[i]])[0]
        if det != ("an" if first[0] in "aeiou" else "a"):
            _fail(words, i, f"{det!r} before {first!r}")
    return NounPhrase(entry, plural, tuple(adjectives), det == "the"), i + 1


def _english_verb(words, i, plural, kinds):
    """[does not | do not] VERB agreeing with the subject -> (entry, negated, next i)."""
    negated = _word(words, i) in ("does", "do") and _word(words, i + 1) == "not"
    if negated:
        if words[i] != ("do" if plural else "does"):
            _fail(words, i, "does/do does not agree with the subject")
        i += 2
    for kind in kinds:
        for entry in _VERB_LISTS[kind]:
            for form, form_plural in ((entry[0], False), (entry[1], True)):
                form = form.split()
                if words[i:i + len(form)] != form:
                    continue
                if not negated and form_plural != plural:
                    _fail(words, i, "the verb does not agree with the subject")
                if negated and not form_plural:
                    _fail(words, i, "expected the plain verb after 'not'")
                return entry, negated, i + len(form)
    _fail(words, i, f"expected a {' or '.join(kinds)} verb")


def _english_clause(words, i, allow_pp):
    subject, i = _english_np(words, i, toy.ANIMATE_NOUNS)
    verb, negated, i = _english_verb(words, i, subject.plural, ("transitive", "intransitive"))
    obj = None
    if _VERB_KIND[verb] == "transitive":
        obj, i = _english_np(words, i, toy.ANIMATE_NOUNS + toy.THING_NOUNS)
    preposition = pp_object = None
    if allow_pp and _word(words, i) in toy.PREPOSITIONS:
        preposition = words[i]
        pp_object, i = _english_np(words, i + 1, toy.PREPOSITIONS[preposition][1])
    return Clause(subject, verb, negated, obj, preposition, pp_object), i


def _english_sentence(words):
    subject, i = _english_np(words, 0, toy.ANIMATE_NOUNS)
    verb, negated, i = _english_verb(words, i, subject.plural,
                                     ("say", "transitive", "intransitive"))
    if _VERB_KIND[verb] == "say":
        if _word(words, i) != "that":
            _fail(words, i, "expected 'that' after the reporting verb")
        clause, i = _english_clause(words, i + 1, allow_pp=False)
        reporter = Clause(subject, verb, negated, None, None, None)
        return _finish(words, i, "reported", clause, reporter)
    clause, i = _english_clause(words, 0, allow_pp=True)  # read again, as one clause
    return _finish(words, i, _template(clause), clause, None)


def _template(clause):
    kind = "transitive" if clause.object is not None else "intransitive"
    return kind + ("_pp" if clause.preposition else "")


def _finish(words, i, template, clause, reporter):
    if _word(words, i) != ".":
        _fail(words, i, "expected '.'")
    if i + 1 != len(words):
        _fail(words, i + 1, "words after the final '.'")
    sentence = Sentence(template, clause, reporter)
    if english_length(sentence) > toy.MAX_LEN:
        raise Ungrammatical(f"longer than {toy.MAX_LEN} English tokens")
    return sentence


def parse_english(text):
    """Parse an English toy sentence into a Sentence.

    Raises Ungrammatical if the generator cannot produce it.
    """
    return _english_sentence(text.split())


# --- Velan -------------------------------------------------------------------------
def _velan_np(words, i, nouns):
    article = _word(words, i)
    definite = article in GENDER_OF_ARTICLE
    i += definite
    for noun_words, entry in VELAN_NOUNS.get(_word(words, i), []):
        if words[i:i + len(noun_words)] == noun_words:
            break
    else:
        _fail(words, i, "expected a noun")
    _check_noun(words, i, entry, nouns)
    gender = entry[3]
    if definite and GENDER_OF_ARTICLE[article] != gender:
        _fail(words, i, f"{article!r} does not match the noun's gender")
    i += len(noun_words)
    plural = _word(words, i) == toy.PLURAL_MARKER
    i += plural
    adjectives = []
    while _word(words, i) in VELAN_ADJECTIVES:
        adjective, adjective_gender = VELAN_ADJECTIVES[words[i]]
        if adjective_gender != gender:
            _fail(words, i, "the adjective does not agree with the noun's gender")
        adjectives.insert(0, adjective)  # Velan mirrors the English order
        i += 1
    _check_adjectives(words, i, adjectives)
    return NounPhrase(entry, plural, tuple(adjectives), definite), i


def _velan_verb(words, i, subject, kinds):
    negated = _word(words, i) == toy.NEGATION
    i += negated
    if _word(words, i) not in VELAN_VERBS:
        _fail(words, i, "expected a verb")
    entry, plural = VELAN_VERBS[words[i]]
    if _VERB_KIND[entry] not in kinds:
        _fail(words, i, f"expected a {' or '.join(kinds)} verb")
    if plural != subject.plural:
        _fail(words, i, "the verb does not agree with the subject")
    return entry, negated, i + 1


def _velan_clause(words, i, allow_pp):
    """SUBJ [NP POSTPOSITION] [OBJ] [nu] VERB."""
    subject, i = _velan_np(words, i, toy.ANIMATE_NOUNS)
    obj = preposition = pp_object = None
    while _word(words, i) != toy.NEGATION and _word(words, i) not in VELAN_VERBS:
        start = i
        phrase, i = _velan_np(words, i, _ALL_NOUNS)
        if _word(words, i) in POSTPOSITIONS:
            if not allow_pp or preposition or obj:
                _fail(words, i, "a postpositional phrase cannot stand here")
            preposition = POSTPOSITIONS[words[i]]
            _check_noun(words, start, phrase.noun, toy.PREPOSITIONS[preposition][1])
            pp_object, i = phrase, i + 1
        elif obj is None:
            _check_noun(words, start, phrase.noun, toy.ANIMATE_NOUNS + toy.THING_NOUNS)
            obj = phrase
        else:
            _fail(words, start, "a second object")
    verb_at = i + (_word(words, i) == toy.NEGATION)
    verb, negated, i = _velan_verb(words, i, subject, ("transitive", "intransitive"))
    if (_VERB_KIND[verb] == "transitive") != (obj is not None):
        _fail(words, verb_at, "object and verb do not match (transitive needs one object)")
    return Clause(subject, verb, negated, obj, preposition, pp_object), i


def _velan_sentence(words):
    if toy.COMPLEMENTIZER not in words:
        clause, i = _velan_clause(words, 0, allow_pp=True)
        return _finish(words, i, _template(clause), clause, None)
    subject, i = _velan_np(words, 0, toy.ANIMATE_NOUNS)
    clause, i = _velan_clause(words, i, allow_pp=False)
    if _word(words, i) != toy.COMPLEMENTIZER:
        _fail(words, i, f"expected {toy.COMPLEMENTIZER!r} after the reported clause")
    say, negated, i = _velan_verb(words, i + 1, subject, ("say",))
    reporter = Clause(subject, say, negated, None, None, None)
    return _finish(words, i, "reported", clause, reporter)


def parse_velan(text):
    """Parse a Velan toy sentence into a Sentence.

    Raises Ungrammatical if the generator cannot produce it.
    """
    return _velan_sentence(text.split())


# --- public yes/no answers -----------------------------------------------------------
def why_not_english(text):
    """None if the toy grammar generates `text` as English, else the reason (a string)."""
    try:
        parse_english(text)
    except Ungrammatical as e:
        return str(e)
    return None


def why_not_velan(text):
    """None if the toy grammar generates `text` as Velan, else the reason (a string)."""
    try:
        parse_velan(text)
    except Ungrammatical as e:
        return str(e)
    return None


def is_grammatical_english(text):
    """True if npformer.data.toy can generate `text` as an English sentence."""
    return why_not_english(text) is None


def is_grammatical_velan(text):
    """True if npformer.data.toy can generate `text` as a Velan sentence."""
    return why_not_velan(text) is None


def is_grammatical_mixed(line):
    """True for a grammatical English line, Velan line, or exact "ENGLISH = VELAN" pair.

    In a pair the Velan half must translate the English half exactly.
    """
    if " = " not in line:
        return is_grammatical_english(line) or is_grammatical_velan(line)
    english, _, velan = line.partition(" = ")
    try:
        return parse_english(english) == parse_velan(velan)
    except Ungrammatical:
        return False
