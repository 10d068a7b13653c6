"""In-context-learning data: small word-mapping tasks written out as examples, then a query.

A line shows k examples of one task and a query, and the task is never named:

    dog -> kan ; cat -> gato ; horse -> ekva

(English noun -> Velan noun). A model pretrained on such lines from many tasks
(npformer.data.toy's lexicon: noun -> Velan noun, singular -> plural, noun ->
article lo/la, adjective -> feminine form, verb -> Velan plural form, ...) must
infer the task from the examples to complete "... ; horse ->".

Held out from pretraining:
- whole tasks (HELDOUT_TASKS: masculine forms, plural -> singular, Velan ->
  English), which never appear in pretraining lines; two are reversals of
  pretraining tasks (the setting of the "reversal curse"), one a sibling;
- words: a fraction of every other task's pairs (chosen by the seed), which
  never appear in that task's pretraining lines, as query or as example.

What the design can test: the query is never among the examples and words are
single tokens, so the examples can show the kind of answer a task wants (its
format and label space) but never the answer itself, and no rule such as
"plural = add s" can be read off them. It is the contrast of notebook 12; the
in-context learning of a mapping is in fewshot.py (a fresh mapping per line,
the query among the examples) and suffixes.py (a rule in word parts).

`evaluate_icl(predict, ...)` measures accuracy against k = 0, 1, 2, 4, 8 on
held-out words or held-out tasks, and zero-shot with a task word ("plural: dog
->"), for any `predict(prompt) -> str` (a model's greedy continuation);
`score_answer` and `guess_rates` score one answer and its chance baseline.
Format and splits: docs/toy_corpus.md ("Word-level lexicon tasks").
"""
import math
import random

from . import toy

ARROW, SEPARATOR = "->", ";"
HELDOUT_TASKS = ("masculine", "singular", "english")
HELDOUT_WORD_FRACTION = 0.2  # of each pretraining task's pairs, held out for evaluation
P_TASK_WORD = 0.3  # pretraining lines that start with the task word ("plural: dog -> dogs")
MAX_EXAMPLES = 8
EVAL_KS = (0, 1, 2, 4, 8)
SPLITS = ("seen_words", "heldout_words", "heldout_tasks")  # evaluation prompts (make_icl_prompts)


def _lexicon_tasks():
    """task name -> list of (input, output) pairs; the task word is "NAME:"."""
    nouns = toy.ANIMATE_NOUNS + toy.THING_NOUNS + toy.PLACE_NOUNS
    verbs = toy.TRANSITIVE_VERBS + toy.INTRANSITIVE_VERBS + toy.SAY_VERBS
    adjectives = sorted(toy.ADJECTIVES.items())
    return {
        "velan": [(sg, velan) for sg, _, velan, _ in nouns],
        "plural": [(sg, pl) for sg, pl, _, _ in nouns],
        "article": [(sg, toy.ARTICLES[gender]) for sg, _, _, gender in nouns],
        "feminine": [(adjective, stem + "a") for adjective, stem in adjectives],
        "verb_plural": [(sg, stem + "en") for sg, _, stem in verbs],
        "verb_singular": [(sg, stem + "e") for sg, _, stem in verbs],
        "plain": [(sg, plain) for sg, plain, _ in verbs],
        # held out by default (HELDOUT_TASKS): variants of the tasks above
        "masculine": [(adjective, stem + "o") for adjective, stem in adjectives],
        "singular": [(pl, sg) for sg, pl, _, _ in nouns],
        "english": [(velan, sg) for sg, _, velan, _ in nouns],
    }


TASKS = _lexicon_tasks()


def split_words(seed=0):
    """Each pretraining task's pairs -> {"train": {task: pairs}, "heldout": {task: pairs}}.

    Held-out tasks have all their pairs under "heldout" and none under "train"; a
    held-out pair is under "train" for no task.
    """
    splits = {"train": {}, "heldout": {}}
    for name, pairs in TASKS.items():
        if name in HELDOUT_TASKS:
            splits["heldout"][name] = list(pairs)
            continue
        shuffled = list(pairs)
        random.Random(f"icl-words-{name}-{seed}").shuffle(shuffled)
        n_heldout = math.ceil(HELDOUT_WORD_FRACTION * len(pairs))
        splits["heldout"][name] = shuffled[:n_heldout]
        splits["train"][name] = shuffled[n_heldout:]
    # A pair can belong to two tasks ("has -> have" is plain form and Velan singular):
    # held out in one, it is kept out of every task's pretraining lines.
    heldout_pairs = {pair for pairs in splits["heldout"].values() for pair in pairs}
    for name, pairs in splits["train"].items():
        splits["train"][name] = [pair for pair in pairs if pair not in heldout_pairs]
    return splits


def format_prompt(examples, query, task_word=None):
    """"a -> x ; b -> y ; query ->" (the answer follows after a space)."""
    parts = [f"{source} {ARROW} {target}" for source, target in examples]
    parts.append(f"{query} {ARROW}")
    prompt = f" {SEPARATOR} ".join(parts)
    return f"{task_word}: {prompt}" if task_word else prompt


def make_icl_text(n_lines=20_000, seed=0, n_valid=1000):
    """Pretraining lines "EXAMPLES ; QUERY -> ANSWER" -> {"train": lines, "valid": lines}.

    Only the training tasks and words are used; k is uniform in 0..MAX_EXAMPLES, and a
    fraction P_TASK_WORD of lines starts with the task word ("plural: ...").
    """
    words = split_words(seed)["train"]
    names = sorted(words)
    rng = random.Random(f"icl-text-{seed}")
    lines = []
    for _ in range(n_lines + n_valid):
        name = rng.choice(names)
        k = rng.randint(0, MAX_EXAMPLES)
        *examples, (query, answer) = rng.sample(words[name], k + 1)
        task_word = name if rng.random() < P_TASK_WORD else None
        lines.append(f"{format_prompt(examples, query, task_word)} {answer}")
    return {"train": lines[:n_lines], "valid": lines[n_lines:]}


def make_icl_prompts(split="heldout_words", k=4, n_prompts=100, seed=0, task_word=False,
                     words_seed=0):
    """Evaluation prompts -> list of (prompt, answer, task name).

    split "seen_words": pretraining tasks, query and examples from the pairs that
    pretraining lines used (in-context recall). split "heldout_words": pretraining
    tasks, the query from that task's held-out words, the examples from its training
    words. split "heldout_tasks": tasks never seen in pretraining, any of their words.
    task_word: prefix "NAME:" (the zero-shot with task word variant; for held-out
    tasks the word was never seen either). words_seed must be the seed given to
    make_icl_text. The query is never among the examples.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0 <= k <= MAX_EXAMPLES:
        raise ValueError(f"k must be in 0..{MAX_EXAMPLES}, got {k}")
    words = split_words(words_seed)
    if split == "heldout_tasks":
        names = sorted(HELDOUT_TASKS)
    else:
        names = sorted(n for n in TASKS if n not in HELDOUT_TASKS)
    rng = random.Random(f"icl-prompts-{split}-{k}-{seed}")
    prompts = []
    for p in range(n_prompts):
        name = names[p % len(names)]  # tasks in turn: equally many prompts each
        if split == "seen_words":
            *examples, (query, answer) = rng.sample(words["train"][name], k + 1)
        elif split == "heldout_words":
            query, answer = rng.choice(words["heldout"][name])
            examples = rng.sample(words["train"][name], k)
        else:
            (query, answer), *examples = rng.sample(words["heldout"][name], k + 1)
        prompts.append((format_prompt(examples, query, name if task_word else None),
                        answer, name))
    return prompts


def completion_answer(completion):
    """The answer in a model's continuation: the text before the first ";" or line break."""
    return completion.split("\n")[0].split(SEPARATOR)[0].strip()


def example_answers(prompt):
    """The answers of a prompt's examples: "a -> x ; b -> y ; q ->" -> ["x", "y"]."""
    return [part.split(f" {ARROW} ")[1] for part in prompt.split(f" {SEPARATOR} ")[:-1]]


def score_answer(said, prompt, answer, task):
    """-> (exact, right kind, copied) for a model's answer `said` to one prompt.

    right kind: `said` is one of the task's possible answers (a Velan noun, lo/la, ...);
    copied: a wrong answer that is the answer of one of the prompt's examples.
    """
    outputs = {out for _, out in TASKS[task]}
    return said == answer, said in outputs, said != answer and said in example_answers(prompt)


def guess_rates(prompt, answer, task):
    """What a uniform guess among the task's possible answers scores: (exact, copied).

    The baseline beside a model's scores: exact = 1 / (number of possible answers);
    copied = the share of possible answers that are a wrong answer shown in the prompt.
    """
    outputs = {out for _, out in TASKS[task]}
    shown_wrong = (set(example_answers(prompt)) - {answer}) & outputs
    return 1 / len(outputs), len(shown_wrong) / len(outputs)


def _accuracy(predict, prompts):
    """-> (hits, accuracy, standard error over prompts, {task: accuracy})."""
    correct, by_task = [], {}
    for prompt, answer, name in prompts:
        ok = completion_answer(predict(prompt)) == answer
        correct.append(ok)
        by_task.setdefault(name, []).append(ok)
    n = len(correct)
    accuracy = sum(correct) / n
    stderr = math.sqrt(accuracy * (1 - accuracy) / n)
    return (sum(correct), accuracy, stderr,
            {name: sum(v) / len(v) for name, v in sorted(by_task.items())})


def evaluate_icl(predict, split="heldout_words", ks=EVAL_KS, n_prompts=100, seed=0,
                 words_seed=0):
    """Accuracy of `predict(prompt) -> str` against the number of examples k.

    Also zero-shot with the task word, on `split` ("heldout_words" or "heldout_tasks").

    Returns {"hits": {k: correct answers of n_prompts}, "accuracy": {k: acc},
    "stderr": {k: standard error over prompts}, "per_task": {task: {k: acc}},
    "task_word_zero_shot": acc, "task_word_stderr": se}. For an interval use the hits
    (npformer/tools/stats.py: wilson_interval); average several `seed`s (and models) for
    error bars over seeds.
    """
    result = {"hits": {}, "accuracy": {}, "stderr": {}, "per_task": {}}
    for k in ks:
        prompts = make_icl_prompts(split, k, n_prompts, seed, words_seed=words_seed)
        hits, accuracy, stderr, by_task = _accuracy(predict, prompts)
        result["hits"][k], result["accuracy"][k], result["stderr"][k] = hits, accuracy, stderr
        for name, value in by_task.items():
            result["per_task"].setdefault(name, {})[k] = value
    prompts = make_icl_prompts(split, 0, n_prompts, seed, task_word=True, words_seed=words_seed)
    _, result["task_word_zero_shot"], result["task_word_stderr"], _ = _accuracy(predict, prompts)
    return result
