"""The entropy floor of the toy text: the best cross-entropy any language model can reach.

A language model trained on text drawn from npformer.data.toy cannot beat the
entropy of the generator itself. That entropy is computable exactly here:

1. Every sentence is a sequence of random choices (template, nouns, number,
   adjectives, article, verbs, negation, preposition), and the choices can be
   read back from the words (npformer.data.grammar parses both languages into
   them; every word belongs to one category, so the parse is unique). So the
   probability of a sentence is the product of its choice probabilities,
   q(s) = prod_k p(choice_k), and no two choice sequences give the same string.
2. The generator rejects draws longer than toy.MAX_LEN English tokens and draws
   again, so the sentence distribution is p(s) = q(s) / Z for short sentences,
   with Z = P_q(length <= MAX_LEN). Then
       H = E_p[-log p(s)] = E_p[-log q(s)] + log Z.
3. The length depends only on a few "structural" choices (template, number of
   adjectives per noun phrase, negation, one- or two-word verb); the word
   choices given the structure are independent uniform or Bernoulli draws whose
   entropy is a closed form. `entropy_floor` enumerates the structural outcomes
   (a few hundred), keeps those within MAX_LEN and adds the word entropies:
       E_p[-log q] = sum_{structures t, len <= MAX_LEN} q(t)/Z * (-log q(t) + H(words | t)).
4. Per token: H divided by the mean number of tokens per line (a long text's
   total nats over its total tokens). English and Velan lines carry the same
   information (the translation is a bijection) in different numbers of tokens.

Sampling the text as a corpus does not change this (sentences are drawn
independently); removing valid/test lines that also occur in train (as
npformer.data.text does) shifts held-out sets slightly towards rarer sentences,
so for a given held-out set `text_nll` (the exact -log p of those very lines)
is the fairest floor. Derivation and numbers: docs/toy_corpus.md.
"""
import math
from functools import cache
from itertools import product

from . import grammar, toy

_ADJECTIVE_CHOICES = (1, len(toy.ADJECTIVES), len(toy.ADJECTIVES) * (len(toy.ADJECTIVES) - 1))


def _bernoulli_entropy(p):
    return -p * math.log(p) - (1 - p) * math.log(1 - p)


def _log_bernoulli(p, outcome):
    return math.log(p if outcome else 1 - p)


# --- log q(s) of one parsed sentence ---------------------------------------------------
def _np_logq(phrase, nouns):
    n_adjectives = len(phrase.adjectives)
    return (-math.log(len(nouns))
            + _log_bernoulli(toy.P_PLURAL, phrase.plural)
            + math.log(toy.ADJECTIVE_COUNT_WEIGHTS[n_adjectives])
            - math.log(_ADJECTIVE_CHOICES[n_adjectives])
            + _log_bernoulli(toy.P_DEFINITE, phrase.definite))


def _verb_logq(clause, verbs):
    return -math.log(len(verbs)) + _log_bernoulli(toy.P_NEGATED, clause.negated)


def _clause_logq(clause):
    logq = _np_logq(clause.subject, toy.ANIMATE_NOUNS)
    verbs = toy.TRANSITIVE_VERBS if clause.object is not None else toy.INTRANSITIVE_VERBS
    logq += _verb_logq(clause, verbs)
    if clause.object is not None:
        logq += _np_logq(clause.object, toy.ANIMATE_NOUNS + toy.THING_NOUNS)
    if clause.preposition is not None:
        logq += -math.log(len(toy.PREPOSITIONS))
        logq += _np_logq(clause.pp_object, toy.PREPOSITIONS[clause.preposition][1])
    return logq


def parse_logq(sentence):
    """log q(s): log-probability of one draw of the generator, before the length rejection."""
    logq = math.log(toy.TEMPLATE_WEIGHTS[sentence.template])
    if sentence.reporter is not None:
        logq += _np_logq(sentence.reporter.subject, toy.ANIMATE_NOUNS)
        logq += _verb_logq(sentence.reporter, toy.SAY_VERBS)
        logq += math.log(0.5)  # inner clause: intransitive or transitive
    return logq + _clause_logq(sentence.clause)


def sentence_logprob(text, language="english"):
    """log p(s) in nats of a toy sentence under the generator (length rejection included).

    Raises grammar.Ungrammatical for sentences it cannot produce.
    """
    parse = grammar.parse_english(text) if language == "english" else grammar.parse_velan(text)
    return parse_logq(parse) - math.log(_structures()["Z"])


# --- exact entropy by enumerating the structural choices -----------------------------
# An outcome is (probability, English tokens, entropy of the word choices given the
# outcome in nats, expected Velan tokens given the outcome).
def _mean_velan_noun_len(nouns):
    return sum(len(entry[2].split()) for entry in nouns) / len(nouns)


def _np_outcomes(nouns, extra_words=0, extra_entropy=0.0, mean_velan_noun=None):
    if mean_velan_noun is None:
        mean_velan_noun = _mean_velan_noun_len(nouns)
    word_entropy = (extra_entropy + _bernoulli_entropy(toy.P_PLURAL)
                    + _bernoulli_entropy(toy.P_DEFINITE))
    velan = toy.P_DEFINITE + mean_velan_noun + toy.P_PLURAL + extra_words
    return [(weight, extra_words + 2 + a, word_entropy + math.log(_ADJECTIVE_CHOICES[a]),
             velan + a)
            for a, weight in enumerate(toy.ADJECTIVE_COUNT_WEIGHTS)]


def _noun_outcomes(nouns):
    """A noun phrase whose noun is drawn from `nouns`."""
    return _np_outcomes(nouns, extra_entropy=math.log(len(nouns)))


def _pp_outcomes():
    """Preposition (uniform, 1 word) + noun phrase from that preposition's nouns."""
    lists = [nouns for _, nouns in toy.PREPOSITIONS.values()]
    noun_entropy = sum(math.log(len(nouns)) for nouns in lists) / len(lists)
    mean_velan_noun = sum(_mean_velan_noun_len(nouns) for nouns in lists) / len(lists)
    return _np_outcomes(None, extra_words=1,
                        extra_entropy=math.log(len(lists)) + noun_entropy,
                        mean_velan_noun=mean_velan_noun)


def _verb_outcomes(verbs):
    """Negated or not, and a verb of one or two English words (uniform within the list)."""
    outcomes = []
    for n_words in sorted({len(entry[0].split()) for entry in verbs}):
        count = sum(len(entry[0].split()) == n_words for entry in verbs)
        for negated in (False, True):
            outcomes.append(((count / len(verbs)) * (toy.P_NEGATED if negated else 1 - toy.P_NEGATED),
                             n_words + 2 * negated, math.log(count), 1 + negated))
    return outcomes


def _template_factors():
    """(name, probability, fixed English tokens, fixed Velan tokens, factors) per template.

    "reported" is split by the kind of its inner clause (drawn with probability 1/2 each).
    """
    subject, objects = _noun_outcomes(toy.ANIMATE_NOUNS), _noun_outcomes(
        toy.ANIMATE_NOUNS + toy.THING_NOUNS)
    transitive, intransitive = _verb_outcomes(toy.TRANSITIVE_VERBS), _verb_outcomes(
        toy.INTRANSITIVE_VERBS)
    reporter = [subject, _verb_outcomes(toy.SAY_VERBS)]
    w = toy.TEMPLATE_WEIGHTS
    return [  # "." is a token in both languages; "that" -> "ke" in reported speech
        ("intransitive", w["intransitive"], 1, 1, [subject, intransitive]),
        ("intransitive_pp", w["intransitive_pp"], 1, 1, [subject, intransitive, _pp_outcomes()]),
        ("transitive", w["transitive"], 1, 1, [subject, transitive, objects]),
        ("transitive_pp", w["transitive_pp"], 1, 1,
         [subject, transitive, objects, _pp_outcomes()]),
        ("reported", w["reported"] / 2, 2, 2, reporter + [subject, intransitive]),
        ("reported", w["reported"] / 2, 2, 2, reporter + [subject, transitive, objects]),
    ]


@cache  # a few hundred outcomes, the same every time
def _structures():
    """Sum over the structural outcomes: Z, E_p[-log q], mean English and Velan tokens."""
    Z = nll = english = velan = 0.0
    for _, weight, fixed_en, fixed_ve, factors in _template_factors():
        for combo in product(*factors):
            q = weight * math.prod(o[0] for o in combo)
            n_english = fixed_en + sum(o[1] for o in combo)
            if n_english > toy.MAX_LEN:
                continue  # rejected by the generator
            Z += q
            nll += q * (-math.log(q) + sum(o[2] for o in combo))
            english += q * n_english
            velan += q * (fixed_ve + sum(o[3] for o in combo))
    return {"Z": Z, "nll_q": nll / Z, "english_tokens": english / Z,
            "velan_tokens": velan / Z}


def entropy_floor(kind="english", extra_tokens_per_line=0):
    """Exact entropy of the toy text of `kind`, per line and per token.

    `kind` is "english", "velan" or "mixed", as made by npformer.data.text.make_toy_text.

    extra_tokens_per_line: tokens a model predicts beyond the words, e.g. 1 for an
    end-of-line token; they are certain (the "." ends the sentence), so they add
    no entropy but spread it over more tokens.
    Returns a dict: nats_per_line, tokens_per_line, nats_per_token, bits_per_token and
    perplexity (= exp(nats_per_token), the lowest perplexity a model can reach), Z.
    """
    s = _structures()
    nats = s["nll_q"] + math.log(s["Z"])  # H(p) = E_p[-log q] + log Z
    pair = s["english_tokens"] + 1 + s["velan_tokens"]  # "ENGLISH = VELAN"
    if kind == "english":
        tokens = s["english_tokens"]
    elif kind == "velan":
        tokens = s["velan_tokens"]
    elif kind == "mixed":
        weights = toy.MIXED_WEIGHTS
        nats += -sum(w * math.log(w) for w in weights.values())  # which kind of line
        tokens = (weights["english"] * s["english_tokens"] + weights["velan"] * s["velan_tokens"]
                  + weights["pair"] * pair)
    else:
        raise ValueError(f"kind must be 'english', 'velan' or 'mixed', got {kind!r}")
    tokens += extra_tokens_per_line
    per_token = nats / tokens
    return {"nats_per_line": nats, "tokens_per_line": tokens, "nats_per_token": per_token,
            "bits_per_token": per_token / math.log(2), "perplexity": math.exp(per_token),
            "Z": s["Z"]}


def line_logprob(line, kind="english"):
    """log p of one line of make_toy_text(kind=...) text.

    The choice of line kind is included for "mixed"; raises grammar.Ungrammatical if
    the generator cannot produce the line.
    """
    if kind in ("english", "velan"):
        return sentence_logprob(line, kind)
    if kind != "mixed":
        raise ValueError(f"kind must be 'english', 'velan' or 'mixed', got {kind!r}")

    if " = " in line:
        english, _, velan = line.partition(" = ")
        if grammar.parse_english(english) != grammar.parse_velan(velan):
            raise grammar.Ungrammatical("the Velan half does not translate the English half")
        return math.log(toy.MIXED_WEIGHTS["pair"]) + sentence_logprob(english, "english")
    if grammar.is_grammatical_english(line):
        return math.log(toy.MIXED_WEIGHTS["english"]) + sentence_logprob(line, "english")
    return math.log(toy.MIXED_WEIGHTS["velan"]) + sentence_logprob(line, "velan")


def text_nll(lines, kind="english", extra_tokens_per_line=0):
    """Exact cross-entropy of the generator itself on `lines`, in nats per token.

    The floor for a model's loss on that very held-out set (compare with exp of it for
    perplexity).
    """
    nats = sum(-line_logprob(line, kind) for line in lines)
    tokens = sum(len(line.split()) + extra_tokens_per_line for line in lines)
    return nats / tokens
