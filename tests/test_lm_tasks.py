"""Labelled tasks, baselines and in-context-learning data from the toy world."""
import random
from collections import Counter

import pytest

from npformer.data import classify, grammar, icl
from npformer.data.baselines import (
    logistic_regression_accuracy,
    majority_accuracy,
    naive_bayes_accuracy,
)
from npformer.data.io import DataError

# A bag of words on 2000 training examples must stay within this of chance on the
# acceptability task (1000 test examples: one standard error is 0.016).
BOW_CHANCE_TOLERANCE = 0.06


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tasks():
    return {name: classify.make_task(name, 600, 100, 300, seed=1) for name in classify.TASKS}


# --- classification tasks ---------------------------------------------------------------
@pytest.mark.parametrize("name", list(classify.TASKS))
def test_task_sizes_balance_and_labels(tasks, name):
    data = tasks[name]
    labels = classify.TASKS[name].labels
    for split, n in (("train", 600), ("valid", 100), ("test", 300)):
        assert len(data[split]) == n
        counts = Counter(label for _, label in data[split])
        assert set(counts) == set(labels)
        assert max(counts.values()) - min(counts.values()) <= 1, (split, counts)


@pytest.mark.parametrize("name", list(classify.TASKS))
def test_task_determinism_and_no_overlap(tasks, name):
    assert classify.make_task(name, 600, 100, 300, seed=1) == tasks[name]
    assert classify.make_task(name, 600, 100, 300, seed=2)["train"] != tasks[name]["train"]
    texts = {split: [t for t, _ in tasks[name][split]] for split in ("train", "valid", "test")}
    for split, items in texts.items():
        assert len(set(items)) == len(items), split
    assert not set(texts["train"]) & set(texts["test"])
    assert not set(texts["train"]) & set(texts["valid"])
    assert not set(texts["valid"]) & set(texts["test"])


def test_acceptability_labels_agree_with_the_grammar(tasks):
    for split in ("train", "test"):
        for text, label in tasks["acceptability"][split]:
            assert grammar.is_grammatical_velan(text) == (label == "acceptable"), text


def test_acceptability_negative_has_the_words_of_its_positive():
    """Examples 2j and 2j+1 start from the same sentence (same rng state).

    The negative is a permutation of the positive's words (and uses each corruption family).
    """
    families = Counter()
    for j in range(60):
        state = random.Random(j)
        positive, label_pos, sentence_pos = classify._draw_acceptability(state, 2 * j)
        state = random.Random(j)
        negative, label_neg, sentence_neg = classify._draw_acceptability(state, 2 * j + 1)
        assert (label_pos, label_neg) == ("acceptable", "unacceptable")
        if sentence_pos == sentence_neg:  # differs only if a corruption came out grammatical
            assert sorted(positive.split()) == sorted(negative.split()), (positive, negative)
            families[j % 3] += 1
    assert len(families) == 3 and sum(families.values()) > 50


def test_acceptability_bag_of_words_is_at_chance():
    data = classify.make_task("acceptability", 2000, 0, 1000, seed=0)
    for accuracy in (naive_bayes_accuracy(data["train"], data["test"]),
                     logistic_regression_accuracy(data["train"], data["test"], steps=200)):
        assert abs(accuracy - 0.5) < BOW_CHANCE_TOLERANCE, accuracy


def test_plural_subject_labels_and_balanced_combinations(tasks):
    combos = Counter()
    for text, label in tasks["plural_subject"]["train"]:
        parse = grammar.parse_english(text)
        assert parse.template == "reported"
        assert label == ("plural" if parse.clause.subject.plural else "singular")
        combos[parse.reporter.subject.plural, parse.clause.subject.plural] += 1
    assert sorted(combos.values()) == [150] * 4, combos
    # the first subject's number is worth nothing; "any plural subject" is right 3 times in 4
    assert sum(main == inner for main, inner in combos.elements()) == 300
    assert sum((main or inner) == inner for main, inner in combos.elements()) == 450


def test_make_task_bad_arguments():
    with pytest.raises(ValueError, match="unknown task"):
        classify.make_task("sentiment")
    with pytest.raises(ValueError, match="n_test"):
        classify.make_task("acceptability", 10, 10, -1)


# --- user TSV -----------------------------------------------------------------------------
def test_load_labelled_tsv(tmp_path):
    path = write(tmp_path / "d.tsv", "\ufeffgood film\tpos\n\n bad film \tneg\r\nok\tpos\n")
    assert classify.load_labelled_tsv(path) == [("good film", "pos"), ("bad film", "neg"),
                                                ("ok", "pos")]


@pytest.mark.parametrize("content, message", [
    ("a\tpos\nno tab here\n", r"d.tsv:2: expected text<TAB>label \(2 columns\), found no tab"),
    ("a\tpos\nb\tneg\textra\n", r"d.tsv:2: .* found 3 columns"),
    ("a\tpos\nb\t \n", r"d.tsv:2: empty label"),
    ("\tpos\nb\tneg\n", r"d.tsv:1: empty text"),
    ("a\tpos\nb\tpos\n", r"d.tsv: every one of the 2 examples has the label 'pos'"),
    ("\n\n", r"d.tsv: no examples"),
    ("", r"d.tsv: no examples"),
])
def test_load_labelled_tsv_errors(tmp_path, content, message):
    path = write(tmp_path / "d.tsv", content)
    with pytest.raises(DataError, match=message) as info:
        classify.load_labelled_tsv(path)
    assert "\n" not in str(info.value)


# --- baselines ------------------------------------------------------------------------------
def test_baselines_on_a_task_one_word_solves():
    train = [("x a b", "one"), ("y a", "two"), ("x b", "one"), ("y b", "two"), ("x", "one")]
    test = [("a x", "one"), ("y", "two"), ("b y a", "two")]
    assert majority_accuracy(train, test) == pytest.approx(1 / 3)
    assert naive_bayes_accuracy(train, test) == 1.0
    assert logistic_regression_accuracy(train, test) == 1.0


# --- in-context learning ----------------------------------------------------------------
def _pairs_of(line):
    """"[task:] a -> x ; b -> y" -> [(a, x), (b, y)]."""
    if line.split()[0].endswith(":"):
        line = line.split(" ", 1)[1]
    return [tuple(part.strip() for part in item.split(icl.ARROW))
            for item in line.split(f" {icl.SEPARATOR} ")]


def test_icl_pretraining_text_holds_out_tasks_and_words():
    text = icl.make_icl_text(3000, seed=0, n_valid=200)
    heldout = icl.split_words(0)["heldout"]
    heldout_pairs = {pair for pairs in heldout.values() for pair in pairs}
    seen = {pair for line in text["train"] + text["valid"] for pair in _pairs_of(line)}
    assert not seen & heldout_pairs
    assert seen <= {pair for pairs in icl.TASKS.values() for pair in pairs}
    task_words = Counter(line.split()[0] for line in text["train"] if line.split()[0][-1] == ":")
    assert not set(task_words) & {name + ":" for name in icl.HELDOUT_TASKS}
    assert 0.2 < sum(task_words.values()) / 3000 < 0.4
    ks = Counter(len(_pairs_of(line)) - 1 for line in text["train"])
    assert set(ks) == set(range(icl.MAX_EXAMPLES + 1))


def test_icl_word_split_is_a_partition():
    words = icl.split_words(3)
    for name, pairs in icl.TASKS.items():
        train, held = words["train"].get(name, []), words["heldout"][name]
        assert set(train) | set(held) <= set(pairs) and not set(train) & set(held)
        assert len(train) + len(held) >= len(pairs) - 1  # "has -> have" is in two tasks
        if name in icl.HELDOUT_TASKS:
            assert not train
        else:
            assert 0 < len(held) < len(train)


@pytest.mark.parametrize("split", ["heldout_words", "heldout_tasks"])
def test_icl_prompts(split):
    words = icl.split_words(0)
    for k in icl.EVAL_KS:
        prompts = icl.make_icl_prompts(split, k, 30, seed=1)
        assert len(prompts) == 30
        for prompt, answer, name in prompts:
            assert prompt.endswith(icl.ARROW)
            *examples, (query, _) = _pairs_of(prompt)
            assert len(examples) == k and (query, answer) in words["heldout"][name]
            assert query not in dict(examples)
            if split == "heldout_words":
                assert set(examples) <= set(words["train"][name])
            else:
                assert name in icl.HELDOUT_TASKS
    prompt, _, name = icl.make_icl_prompts(split, 0, 1, task_word=True)[0]
    assert prompt.startswith(f"{name}: ")


def _lookup_model(prompt):
    """Stands in for a model that infers the task: the first task consistent with the examples."""
    *examples, (query, _) = _pairs_of(prompt)
    for pairs in icl.TASKS.values():
        table = dict(pairs)
        if query in table and all(table.get(a) == b for a, b in examples):
            return f" {table[query]} ; more"
    return " ?"


def test_evaluate_icl():
    result = icl.evaluate_icl(_lookup_model, "heldout_tasks", n_prompts=30)
    assert [result["accuracy"][k] for k in (1, 2, 4, 8)] == [1.0] * 4
    assert result["accuracy"][0] < 1.0 and result["stderr"][0] > 0
    assert set(result["per_task"]) == set(icl.HELDOUT_TASKS)
    silent = icl.evaluate_icl(lambda prompt: "", "heldout_words", ks=(0, 8), n_prompts=20)
    assert silent["accuracy"] == {0: 0.0, 8: 0.0} and silent["task_word_zero_shot"] == 0.0
    assert icl.completion_answer(" sabi mun ; dog -> kan\nnext") == "sabi mun"
