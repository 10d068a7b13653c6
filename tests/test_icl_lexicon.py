"""The scoring of the toy-icl lexicon experiment (npformer/data/icl.py), the contrast of notebook 12.

A model's answer is exact, of the right kind, or a copy of an example's answer; beside
each score stands what a uniform guess among the task's answers would get.
"""
import pytest

from npformer.data import icl


def test_example_answers_reads_every_example_and_not_the_query():
    assert icl.example_answers("dog -> kan ; cat -> gato ; horse ->") == ["kan", "gato"]
    assert icl.example_answers("plural: dog -> dogs ; cat ->") == ["dogs"]
    assert icl.example_answers("teacher -> sabi mun ; horse ->") == ["sabi mun"]
    assert icl.example_answers("horse ->") == []


def test_score_answer():
    prompt = "dog -> lo ; queen -> la ; horse ->"
    assert icl.score_answer("lo", prompt, "lo", "article") == (True, True, False)
    assert icl.score_answer("la", prompt, "lo", "article") == (False, True, True)
    assert icl.score_answer("kan", prompt, "lo", "article") == (False, False, False)
    prompt = "dog -> kan ; cat -> gato ; horse ->"
    assert icl.score_answer("avi", prompt, "ekva", "velan") == (False, True, False)


def test_guess_rates_count_the_possible_answers():
    # article: two possible answers; one shown wrong answer is half of them
    assert icl.guess_rates("dog -> lo ; queen -> la ; cat ->", "la", "article") == (0.5, 0.5)
    assert icl.guess_rates("queen -> la ; cat ->", "la", "article") == (0.5, 0.0)
    n_velan = len({out for _, out in icl.TASKS["velan"]})
    exact, copied = icl.guess_rates("dog -> kan ; cat -> gato ; horse ->", "ekva", "velan")
    assert exact == pytest.approx(1 / n_velan) and copied == pytest.approx(2 / n_velan)


def test_seen_word_prompts_use_training_pairs_and_never_show_the_query():
    words = icl.split_words(0)
    for prompt, answer, task in icl.make_icl_prompts("seen_words", 4, 40, seed=3):
        pairs = [tuple(part.split(f" {icl.ARROW} ")) for part in
                 prompt.split(f" {icl.SEPARATOR} ")[:-1]]
        query = prompt.split(f" {icl.SEPARATOR} ")[-1].split(f" {icl.ARROW}")[0]
        assert set(pairs) | {(query, answer)} <= set(words["train"][task])
        assert query not in [source for source, _ in pairs]
