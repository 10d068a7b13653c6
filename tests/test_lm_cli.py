"""The language-model commands end to end on tiny sizes: pretrain, generate, finetune, classify, eval.

Every run is a few steps of a d_model 16, one-layer model: these tests check that
the commands work together and refuse bad input with one line (exit 2), not
what the models learn (benchmarks and docs/language_models.md show that).
"""
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from npformer.training.checkpoint import load_checkpoint
from npformer.cli import main
from npformer.models import build_model
from npformer.models.pretrained import pretrained_key_map

TINY = ["--d-model", "16", "--n-heads", "2", "--d-ff", "32", "--n-layers", "1",
        "--max-len", "24", "--max-tokens", "512", "--max-steps", "4", "--eval-every", "2",
        "--warmup-steps", "1", "--log-every", "2", "--max-minutes", "0"]
LABELS = ["acceptable", "unacceptable"]  # of the toy acceptability task
TOY_SENTENCES = ["the dog sees a cat .", "a big cat eats the fish .", "the old man walks .",
                 "lo kan vide la gato .", "the small dog runs ."]


def one_line_error(capsys, code, *needles):
    """Exit code 2 and a single stderr line naming the problem (no traceback)."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm") / "run"
    assert main(["pretrain", *TINY, "--data-size", "3000", "--out-dir", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def clf(tmp_path_factory, lm):
    out = tmp_path_factory.mktemp("clf") / "run"
    assert main(["finetune", *TINY, "--from", str(lm / "best.npz"), "--task", "acceptability",
                 "--data-size", "64", "--out-dir", str(out)]) == 0
    return out


def body(params, mapping):
    return {key: params[key] for key in mapping}


# --------------------------------------------------------------------- pretrain
def test_pretrain_writes_a_language_model_and_its_log(lm):
    ckpt = load_checkpoint(lm / "best.npz")
    assert type(ckpt.model).__name__ == "LanguageModel"
    assert ckpt.model.config.kind == "decoder-only" and ckpt.model.config.d_model == 16
    log = [json.loads(line) for line in (lm / "log.jsonl").read_text().splitlines()]
    valid = [h for h in log if h["type"] == "valid"]
    assert [h["step"] for h in valid] == [2, 4]
    assert all(h["perplexity"] == pytest.approx(np.exp(h["valid_loss"])) for h in valid)
    assert (lm / "curves.png").stat().st_size > 0 and (lm / "last.npz").exists()


@pytest.mark.parametrize("mode", ["lines", "whole"])
def test_pretrain_on_a_text_file(tmp_path, capsys, mode):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(TOY_SENTENCES * 8) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    assert main(["pretrain", *TINY, "--max-steps", "2", "--data", str(text), "--text-mode", mode,
                 "--valid-frac", "0.2", "--test-frac", "0.2", "--out-dir", str(out)]) == 0
    err = capsys.readouterr().err
    # lines: 40 lines shuffled into splits; whole: one stream, cut into its start (train)
    # and two held-out parts (bug: it was one document, always "too small to split")
    expected = "40 lines" if mode == "lines" else "one stream of 879 characters; train 1, " \
                                                  "valid 1, test 1"
    assert f"{text}: {expected}" in err, err
    assert type(load_checkpoint(out / "best.npz").model).__name__ == "LanguageModel"


@pytest.mark.parametrize("content", ["", "\n \n"])
def test_pretrain_on_an_empty_file_is_one_line(tmp_path, capsys, content):
    text = tmp_path / "empty.txt"
    text.write_text(content, encoding="utf-8")
    code = main(["pretrain", *TINY, "--data", str(text), "--out-dir", str(tmp_path / "r")])
    one_line_error(capsys, code, str(text))


# --------------------------------------------------------------------- generate
def test_generate_from_arguments_and_stdin_seeded(lm, capsys, monkeypatch):
    model = str(lm / "best.npz")
    assert main(["generate", "--model", model, "--max-new-tokens", "5", "the dog", "a"]) == 0
    greedy = capsys.readouterr().out.splitlines()
    assert len(greedy) == 2 and greedy[0].startswith("the dog") and greedy[1].startswith("a")
    sampled = []
    for _ in range(2):
        monkeypatch.setattr(sys, "stdin", io.StringIO("the dog\nthe cat\n"))
        assert main(["generate", "--model", model, "--temperature", "1.5", "--n", "3",
                     "--seed", "4", "--max-new-tokens", "6"]) == 0
        sampled.append(capsys.readouterr().out.splitlines())
    assert sampled[0] == sampled[1]  # the same seed: the same samples
    assert len(sampled[0]) == 6 and all(s.startswith("the ") for s in sampled[0])
    assert len(set(sampled[0][:3])) > 1  # three samples of one prompt differ
    monkeypatch.setattr(sys, "stdin", io.StringIO("the dog\nthe cat\n"))
    assert main(["generate", "--model", model, "--temperature", "1.5", "--n", "3",
                 "--seed", "5", "--max-new-tokens", "6"]) == 0
    assert capsys.readouterr().out.splitlines() != sampled[0]


def test_generate_with_a_prompt_longer_than_max_len_is_a_note(lm, capsys):
    prompt = " ".join(["the dog sees a cat ."] * 8)  # 48 tokens, max_len 24
    assert main(["generate", "--model", str(lm / "best.npz"), "--max-new-tokens", "3",
                 prompt]) == 0
    captured = capsys.readouterr()
    assert "note: the prompt has 48 tokens" in captured.err
    assert len(captured.out.splitlines()) == 1


# -------------------------------------------------------------------- finetune
def test_finetune_from_an_lm_starts_from_its_body(lm, clf):
    pre = load_checkpoint(lm / "best.npz")
    ckpt = load_checkpoint(clf / "best.npz")
    assert type(ckpt.model).__name__ == "Classifier" and ckpt.labels == LABELS
    assert ckpt.model.config.kind == "decoder-only" and ckpt.src_tokenizer.to_dict() == \
        pre.src_tokenizer.to_dict()
    log = [json.loads(line) for line in (clf / "log.jsonl").read_text().splitlines()]
    assert {"accuracy", "valid_loss"} <= set(next(h for h in log if h["type"] == "valid"))


def finetune(tmp_path, lm, name, *flags):
    out = tmp_path / name
    assert main(["finetune", *TINY, "--from", str(lm / "best.npz"), "--task", "acceptability",
                 "--data-size", "64", "--out-dir", str(out), *flags]) == 0
    return load_checkpoint(out / "last.npz").model


def test_freeze_body_leaves_the_body_bit_identical(tmp_path, lm):
    pre = load_checkpoint(lm / "best.npz").model
    model = finetune(tmp_path, lm, "frozen", "--freeze-body", "true")
    mapping = pretrained_key_map(model.config, pre.config, ("decoder",))
    assert set(model.params) - set(mapping) == {"head.W", "head.b"}
    for key, from_key in mapping.items():
        assert np.array_equal(model.params[key], pre.params[from_key]), key
    head = load_checkpoint(tmp_path / "frozen" / "best.npz").model.params["head.W"]
    assert not np.array_equal(model.params["head.W"], head)  # the head did learn


def test_body_lr_scale_and_scratch(tmp_path, lm):
    pre = load_checkpoint(lm / "best.npz").model

    def body_change(model):
        mapping = pretrained_key_map(model.config, pre.config, ("decoder",))
        return max(float(np.abs(model.params[k] - pre.params[v]).max())
                   for k, v in mapping.items())

    full = body_change(finetune(tmp_path, lm, "full", "--max-steps", "2"))
    slow = body_change(finetune(tmp_path, lm, "slow", "--max-steps", "2",
                                "--body-lr-scale", "0.01"))
    assert 0 < slow < 0.05 * full  # Adam steps scale with the learning rate
    # scratch: the LM's architecture, fresh weights. Adam moves a weight by about the
    # learning rate per step, so one step at lr 1e-8 stays within 1e-6 of the init.
    scratch = finetune(tmp_path, lm, "scratch", "--max-steps", "1", "--scratch", "true",
                       "--lr", "1e-8", "--seed", "3")
    fresh = build_model(scratch.config)
    assert scratch.config.d_model == pre.config.d_model and scratch.config.seed == 3
    for key in pretrained_key_map(scratch.config, pre.config, ("decoder",)):
        assert np.allclose(scratch.params[key], fresh.params[key], rtol=0, atol=1e-6), key
    assert body_change(scratch) > 0.01

def test_finetune_on_a_labelled_tsv(tmp_path, lm, capsys):
    data = tmp_path / "labelled.tsv"
    rows = [f"{s}\t{'velan' if s.startswith('lo') else 'english'}" for s in TOY_SENTENCES]
    data.write_text("\n".join(rows * 6) + "\n", encoding="utf-8")
    out = tmp_path / "tsv"
    assert main(["finetune", *TINY, "--max-steps", "2", "--from", str(lm / "best.npz"),
                 "--data", str(data), "--valid-frac", "0.2", "--test-frac", "0.2",
                 "--out-dir", str(out)]) == 0
    assert load_checkpoint(out / "best.npz").labels == ["english", "velan"]
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["one label", "translator checkpoint", "classifier checkpoint",
                                  "missing checkpoint", "not a task"])
def test_finetune_bad_input_is_one_line(tmp_path, lm, clf, capsys, case):
    data = tmp_path / "one.tsv"
    data.write_text("the dog runs .\tgood\na cat eats .\tgood\n", encoding="utf-8")
    translator = tmp_path / "tr"
    if case == "translator checkpoint":
        assert main(["train", "--preset", "copy", *TINY, "--max-steps", "1", "--eval-every", "1",
                     "--eval-sentences", "2", "--out-dir", str(translator)]) == 0
        capsys.readouterr()
    flags, needle = {
        "one label": (["--data", str(data)], "good"),
        "translator checkpoint": (["--from", str(translator / "best.npz")],
                                  "not a pretrained language model"),
        "classifier checkpoint": (["--from", str(clf / "best.npz")],
                                  "not a pretrained language model"),
        "missing checkpoint": (["--from", str(tmp_path / "none.npz")], "none.npz"),
        "not a task": (["--task", "copy"], "copy: no such file, and not a built-in data set "
                                           "(choose acceptability"),
    }[case]
    code = main(["finetune", *TINY, *flags, "--out-dir", str(tmp_path / "out")])
    one_line_error(capsys, code, needle)


# -------------------------------------------------------------- classify, eval
def test_classify_arguments_and_stdin(clf, capsys, monkeypatch):
    model = str(clf / "best.npz")
    assert main(["classify", "--model", model, *TOY_SENTENCES[:2]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, text in zip(lines, TOY_SENTENCES):
        label, prob, echoed = line.split("\t")
        assert label in LABELS and 0.5 <= float(prob) <= 1.0 and echoed == text
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(TOY_SENTENCES[:2]) + "\n"))
    assert main(["classify", "--model", model]) == 0
    assert capsys.readouterr().out.splitlines() == lines


def test_eval_a_language_model(lm, tmp_path, capsys):
    target = tmp_path / "lm.json"
    assert main(["eval", "--model", str(lm / "best.npz"), "--limit", "50",
                 "--json", str(target)]) == 0
    out = capsys.readouterr().out
    report = json.loads(target.read_text())
    assert report["n"] == 50 and report["perplexity"] == pytest.approx(np.exp(report["loss"]))
    assert f"perplexity     {report['perplexity']:.3f}" in out


def test_eval_a_classifier(clf, tmp_path, capsys):
    target = tmp_path / "clf.json"
    assert main(["eval", "--model", str(clf / "best.npz"), "--limit", "40",
                 "--json", str(target)]) == 0
    out = capsys.readouterr().out
    report = json.loads(target.read_text())
    matrix = np.array(report["confusion"])
    assert report["n"] == 40 == matrix.sum() and report["labels"] == LABELS
    assert report["accuracy"] == pytest.approx(np.trace(matrix) / 40)
    assert "accuracy" in out and "true \\ predicted" in out


def test_eval_a_classifier_on_a_user_file(clf, tmp_path, capsys):
    data = tmp_path / "l.tsv"
    data.write_text("the dog runs .\tacceptable\nthe dog run .\tunacceptable\n"
                    "lo kan .\tgood\n", encoding="utf-8")
    assert main(["eval", "--model", str(clf / "best.npz"), "--data", str(data)]) == 0
    captured = capsys.readouterr()
    assert "examples       2" in captured.out
    assert "1 examples have labels the model does not know (good)" in captured.err
    # bug: a file with none of the model's labels scored 0 examples, "accuracy 0.00%"
    data.write_text("the dog runs .\tgood\nthe dog run .\tbad\n", encoding="utf-8")
    code = main(["eval", "--model", str(clf / "best.npz"), "--data", str(data)])
    one_line_error(capsys, code, "labels the model does not know (bad, good)")


# ----------------------------------------------------- the translator from an LM
def test_train_a_translator_from_a_pretrained_lm(lm, tmp_path, capsys):
    out = tmp_path / "tr"
    # size flags that contradict the LM are refused: the run would have to ignore them
    assert main(["train", *TINY, "--max-steps", "1", "--eval-every", "1", "--eval-sentences",
                 "2", "--d-model", "24", "--d-ff", "40", "--init-from", str(lm / "best.npz"),
                 "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--d-model 24 (the LM has 16), --d-ff 40 (the LM has 32)" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    # without them the LM's architecture is used, and saved as the run's configuration
    assert main(["train", *TINY, "--max-steps", "1", "--eval-every", "1", "--eval-sentences",
                 "2", "--init-from", str(lm / "best.npz"), "--out-dir", str(out)]) == 0
    assert "started from" in capsys.readouterr().err
    pre = load_checkpoint(lm / "best.npz")
    ckpt = load_checkpoint(out / "best.npz")
    assert type(ckpt.model).__name__ == "Transformer"
    assert ckpt.model.config.d_model == pre.model.config.d_model
    assert ckpt.model.config.d_ff == pre.model.config.d_ff
    assert ckpt.train_config["shared_vocab"] and ckpt.model.config.share_embeddings
    assert ckpt.src_tokenizer.to_dict() == ckpt.tgt_tokenizer.to_dict() == \
        pre.src_tokenizer.to_dict()


# ----------------------------------------------------------- the wrong kind of model
@pytest.mark.parametrize("command,holds", [("generate", "classifier"), ("classify", "language model"),
                                           ("translate", "language model"),
                                           ("generate", "translator"), ("classify", "translator")])
def test_a_model_of_another_kind_is_one_line_exit_2(lm, clf, tmp_path, command, holds):
    if holds == "translator":
        out = tmp_path / "tr"
        assert main(["train", "--preset", "copy", *TINY, "--max-steps", "1", "--eval-every", "1",
                     "--eval-sentences", "2", "--out-dir", str(out)]) == 0
        model = out / "best.npz"
    else:
        model = (clf if holds == "classifier" else lm) / "best.npz"
    result = subprocess.run([sys.executable, "-m", "npformer", command, "--model", str(model),
                             "the dog"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"holds a {holds}, not a" in result.stderr
