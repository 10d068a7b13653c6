"""The decoder-only language model and the classifiers: generation, kinds, checkpoints, transfer.

Generation with the key/value cache must change nothing but speed (as for the
translator in tests/test_decoding.py); each kind builds, saves and loads as
itself and refuses the configs of the others; pretrained weights are copied
exactly where `pretrained_key_map` says, and nowhere else.
"""
import numpy as np
import pytest
from helpers import assert_close

from npformer.training.checkpoint import load_checkpoint, save_checkpoint
from npformer.nn.config import ConfigError, ModelConfig
from npformer.models.decoding import continue_text
from npformer.nn import layers as L
from npformer.models.classifier import Classifier
from npformer.models.language_model import LanguageModel
from npformer.models.transformer import Transformer
from npformer.models import build_model
from npformer.models.pretrained import load_pretrained, pretrained_key_map
from npformer.nn.tape import Tape
from npformer.tokenizers import make_tokenizers

BOS, EOS, PAD = 1, 2, 0
V = 19
LOGITS_RTOL = 1e-10  # float64: cached and full passes differ only in summation order
LOGITS_ATOL = 1e-12  # for logits near zero, where a relative bound means nothing
TINY = dict(src_vocab_size=V, tgt_vocab_size=V, d_model=16, n_heads=4, d_ff=24, max_len=12,
            dropout=0.0, dtype="float64")
LM = dict(TINY, kind="decoder-only", n_encoder_layers=0, n_decoder_layers=2)
ENCODER = dict(TINY, kind="encoder-only", n_encoder_layers=2, n_decoder_layers=0, n_classes=3)
LM_ARCHITECTURES = {
    "pre-LN tied": dict(),
    "post-LN untied learned": dict(norm_position="post", tie_output=False, positional="learned"),
    "pre-LN gelu learned": dict(activation="gelu", positional="learned"),
}


def lively_lm(eos_bias=0.0, seed=0, **changes):
    """A tiny float64 LM with a random output bias (varied tokens) and a set EOS bias."""
    model = LanguageModel(ModelConfig(**{**LM, **changes}))
    b = model.params["out.b"]
    b[:] = np.random.default_rng(seed).normal(0.0, 1.0, size=b.shape)
    b[EOS] = eos_bias
    return model


def shifted(model, seed=0):
    """Move every parameter off its init (zero biases, unit gammas hide bugs); returns model."""
    rng = np.random.default_rng(seed)
    for p in model.params.values():
        p += 0.1 * rng.normal(size=p.shape)
    return model


# ------------------------------------------------------------------ generation
@pytest.mark.parametrize("arch", LM_ARCHITECTURES)
def test_lm_cached_step_logits_equal_full_forward(arch):
    """Each cached step's logits equal model.forward(prefix)[:, -1]; a prompt goes in at once."""
    model = shifted(LanguageModel(ModelConfig(**{**LM, **LM_ARCHITECTURES[arch]})))
    T = model.config.max_len
    prefix = np.random.default_rng(2).integers(3, V, size=(3, T))  # (B,T)
    prefix[:, 0] = BOS
    prefix[1, 5] = PAD  # a padded position must be hidden from later queries in both paths
    cache = model.new_cache(3, T)
    prompt = model.forward(prefix[:, :4], cache=cache)  # 4 positions in one call
    assert_close(f"{arch}: prompt logits", prompt, model.forward(prefix[:, :4]),
                 LOGITS_RTOL, LOGITS_ATOL)
    for t in range(4, T):
        step = model.forward(prefix[:, t: t + 1], cache=cache)[:, -1]  # (B,V)
        full = model.forward(prefix[:, : t + 1])[:, -1]  # (B,V)
        assert_close(f"{arch}: logits at step {t}", step, full, LOGITS_RTOL, LOGITS_ATOL)
    with pytest.raises(ValueError, match="max_len"):
        model.forward(prefix[:, :1], cache=cache)
    with pytest.raises(ValueError, match="without a tape"):
        model.forward(prefix[:, :1], tape=Tape(), cache=model.new_cache(3, T))


PROMPTS = [[], [7], [5, 9, 11, 4, 8]]


@pytest.mark.parametrize("arch", LM_ARCHITECTURES)
def test_continue_text_cached_equals_uncached(arch):
    """Greedy and seeded sampling (n > 1): the same continuations with and without the cache."""
    model = lively_lm(eos_bias=1.5, **LM_ARCHITECTURES[arch])
    lengths = set()
    for prompt in PROMPTS:
        greedy = continue_text(model, prompt, n=2)
        assert greedy == continue_text(model, prompt, n=2, use_cache=False)
        assert greedy[0] == greedy[1]  # greedy rows of one prompt agree
        for kw in (dict(temperature=1.0), dict(temperature=0.7, top_k=5, top_p=0.9)):
            cached = continue_text(model, prompt, rng=3, n=4, **kw)
            assert cached == continue_text(model, prompt, rng=3, n=4, use_cache=False, **kw)
            assert cached == continue_text(model, prompt, rng=3, n=4, **kw)  # seeded
            room = model.config.max_len - 1 - len(prompt)
            assert all(len(out) <= room and EOS not in out and PAD not in out for out in cached)
            lengths.update(len(out) for out in cached)
    assert len(lengths) > 2  # rows end at different steps: EOS is drawn, rows finish alone


def test_continue_text_limits():
    model = lively_lm(eos_bias=-10.0)  # never ends by itself
    L = model.config.max_len
    assert [len(x) for x in continue_text(model, [5], max_new_tokens=3, n=2)] == [3, 3]
    assert len(continue_text(model, [5] * 4)[0]) == L - 1 - 4  # up to the last position
    assert continue_text(model, [5] * (L - 1)) == [[]]  # the prompt fills the model
    with pytest.raises(ValueError, match="at most"):
        continue_text(model, [5] * L)
    with pytest.raises(ValueError, match="temperature"):
        continue_text(model, [5], temperature=-1.0)


# ----------------------------------------------------------------- kinds, losses
def test_build_model_picks_the_class_and_each_class_refuses_the_others():
    cases = [(Transformer, dict(TINY, n_encoder_layers=1, n_decoder_layers=1)),
             (LanguageModel, LM), (Classifier, dict(LM, n_classes=2)), (Classifier, ENCODER)]
    for model_class, fields in cases:
        cfg = ModelConfig(**fields)
        assert type(build_model(cfg)) is model_class
        for other in {Transformer, LanguageModel, Classifier} - {model_class}:
            with pytest.raises(ValueError, match="use npformer.models.build_model"):
                other(cfg)


@pytest.mark.parametrize("changes,field", [
    (dict(kind="encoder-decoder", n_encoder_layers=1, n_classes=2), "n_classes"),
    (dict(kind="encoder-only", n_encoder_layers=1, n_decoder_layers=0), "n_classes"),
    (dict(n_classes=1), "n_classes"),
    (dict(n_encoder_layers=1), "n_encoder_layers"),
    (dict(kind="encoder-only", n_encoder_layers=1, n_classes=2), "n_decoder_layers"),
    (dict(n_classes=2, pooling="max"), "pooling"),
    (dict(kind="gpt"), "kind"),
])
def test_mismatched_kind_configs_are_refused(changes, field):
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**{**LM, **changes})


def test_lm_loss_ignores_padding():
    """More padding (a longer batch, an all-padding tail) changes neither loss nor gradients."""
    model = shifted(LanguageModel(ModelConfig(**LM)))
    ids_in = np.array([[1, 3, 4, 5, 6], [1, 11, 12, 0, 0]])
    ids_out = np.array([[3, 4, 5, 6, 2], [11, 12, 2, 0, 0]])

    def loss_and_grads(a, b):
        tape = Tape()
        model.zero_grad()
        loss = model.loss(a, b, tape=tape)
        tape.backward(model.grads, "loss")
        return loss, {k: g.copy() for k, g in model.grads.items()}

    loss, grads = loss_and_grads(ids_in, ids_out)
    wide = (np.pad(ids_in, ((0, 0), (0, 3))), np.pad(ids_out, ((0, 0), (0, 3))))
    loss2, grads2 = loss_and_grads(*wide)
    assert loss2 == pytest.approx(loss, rel=1e-12)
    for k in grads:
        assert_close(k, grads2[k], grads[k], 1e-10, 1e-13)
    # the per-token mean runs over the 8 real targets: the padded row counts 3, not 5
    logits = model.forward(ids_in)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    real = ids_out != PAD
    by_hand = -np.take_along_axis(logp, ids_out[..., None], -1)[..., 0][real].mean()
    assert loss == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("body,pooling", [("decoder-only", "last"), ("decoder-only", "mean"),
                                          ("decoder-only", "before_eos"),
                                          ("encoder-only", "mean"), ("encoder-only", "first"),
                                          ("encoder-only", "last")])
def test_classifier_ignores_padding(body, pooling):
    """A sequence's class logits do not depend on how much padding follows it."""
    base = LM if body == "decoder-only" else ENCODER
    model = shifted(Classifier(ModelConfig(**{**base, "n_classes": 3, "pooling": pooling})))
    ids = np.array([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]])
    logits = model.forward(ids)
    assert_close("padded", model.forward(np.pad(ids, ((0, 0), (0, 4)))), logits, 1e-10, 1e-13)
    assert_close("alone", model.forward(ids[1:, :3]), logits[1:], 1e-10, 1e-13)
    probs = model.predict(ids)
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1.0)
    with pytest.raises(ValueError, match="labels"):
        model.loss(ids, np.array([0, 3]))


def test_classifier_checks_ids_against_its_own_embedding():
    """Bug: ids were checked against the source vocabulary, which a decoder-only body does not use.

    Its embedding has the target vocabulary, so an id between the two sizes got past the
    check and crashed inside the embedding (IndexError) instead of a clear ValueError.
    """
    model = Classifier(ModelConfig(**{**LM, "n_classes": 2, "src_vocab_size": 30}))
    with pytest.raises(ValueError, match=f"token id 25 out of range \\[0, {V}\\)"):
        model.forward(np.array([[1, 25, 2]]))
    with pytest.raises(ValueError, match="out of range"):
        model.loss(np.array([[1, 25, 2]]), np.array([1]))
    assert model.forward(np.array([[1, V - 1, 2]])).shape == (1, 2)


def test_decoder_only_classifier_reads_the_end_and_is_causal():
    """"last" pooling on a causal body: a change of an early token changes the logits."""
    model = shifted(Classifier(ModelConfig(**{**LM, "n_classes": 2, "pooling": "last"})))
    a = model.forward(np.array([[1, 5, 6, 7, 2]]))
    b = model.forward(np.array([[1, 9, 6, 7, 2]]))
    assert np.abs(a - b).max() > 1e-6


def test_before_eos_pooling_reads_the_texts_last_token_on_a_causal_body():
    """"before_eos" reads the position before EOS: on a causal body the EOS id cannot matter.

    That is the point of the mode: a pretrained LM never read EOS as an input.
    """
    model = shifted(Classifier(ModelConfig(**{**LM, "n_classes": 2, "pooling": "before_eos"})))
    a = model.forward(np.array([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]]))
    b = model.forward(np.array([[1, 5, 6, 7, 9], [1, 8, 9, 0, 0]]))  # another id in EOS's place
    assert_close("EOS replaced", b, a, 1e-12, 1e-14)
    c = model.forward(np.array([[1, 5, 6, 9, 2], [1, 9, 2, 0, 0]]))  # the text's last token changed
    assert np.abs(c - a).min() > 1e-6
    assert L.pool_weights(np.array([[True, True, False]]), "before_eos", np.float64)[0, 0] == 1.0


# ------------------------------------------------------------------ checkpoints
def tokenizer():
    texts = [f"w{i} w{i + 1}" for i in range(V - 5)]
    tok, _ = make_tokenizers(texts, texts, kind="word", shared=True)
    assert tok.vocab_size <= V
    return tok


@pytest.mark.parametrize("kind", ["translator", "lm", "decoder classifier",
                                  "encoder classifier"])
def test_checkpoints_of_every_kind_round_trip(kind, tmp_path):
    tok = tokenizer()
    sizes = dict(src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size,
                 dtype="float32")
    changes = {"translator": dict(TINY, n_encoder_layers=1, n_decoder_layers=1),
               "lm": dict(LM, tie_output=False, positional="learned"),
               "decoder classifier": dict(LM, n_classes=3, pooling="mean"),
               "encoder classifier": dict(ENCODER, pooling="first")}[kind]
    model = shifted(build_model(ModelConfig(**{**changes, **sizes})))
    labels = ["bad", "good", "meh"] if model.config.n_classes else []
    path = save_checkpoint(tmp_path / "m.npz", model, tok, tok, labels=labels)
    ckpt = load_checkpoint(path)
    assert type(ckpt.model) is type(model) and ckpt.model.config == model.config
    assert ckpt.labels == labels
    assert set(ckpt.model.params) == set(model.params)
    for k, v in model.params.items():
        assert ckpt.model.params[k].dtype == v.dtype and np.array_equal(ckpt.model.params[k], v), k
    ids = np.array([[1, 5, 6, 2]])
    args = (ids, ids) if kind == "translator" else (ids,)
    assert np.array_equal(ckpt.model.forward(*args), model.forward(*args))


def test_checkpoint_with_labels_that_do_not_fit_is_refused(tmp_path):
    from npformer.training.checkpoint import CheckpointError

    tok = tokenizer()
    model = build_model(ModelConfig(**{**ENCODER, "src_vocab_size": tok.vocab_size,
                                       "tgt_vocab_size": tok.vocab_size}))
    path = save_checkpoint(tmp_path / "c.npz", model, tok, tok, labels=["a", "b"])  # 3 classes
    with pytest.raises(CheckpointError, match="labels"):
        load_checkpoint(path)


# ---------------------------------------------------------- pretrained weights
def pretrained_lm(**changes):
    return shifted(LanguageModel(ModelConfig(**{**LM, "positional": "learned", **changes})),
                   seed=5)


@pytest.mark.parametrize("target", ["decoder classifier", "encoder classifier", "translator",
                                    "translator decoder only", "deeper translator"])
def test_load_pretrained_copies_exactly_the_mapped_weights(target):
    lm = pretrained_lm()
    learned = dict(positional="learned")
    cfg = {"decoder classifier": dict(LM, n_classes=2, **learned),
           "encoder classifier": dict(ENCODER, **learned),
           "translator": dict(TINY, n_encoder_layers=2, n_decoder_layers=2, **learned),
           "translator decoder only": dict(TINY, n_encoder_layers=2, n_decoder_layers=2),
           "deeper translator": dict(TINY, n_encoder_layers=3, n_decoder_layers=1)}[target]
    parts = ("decoder",) if target == "translator decoder only" else ("encoder", "decoder")
    model = build_model(ModelConfig(**{**cfg, "seed": 7}))
    before = {k: v.copy() for k, v in model.params.items()}
    copied = load_pretrained(model, lm, parts)
    mapping = pretrained_key_map(model.config, lm.config, parts)
    assert copied == sorted(mapping)
    for key, value in model.params.items():
        if key in mapping:
            assert np.array_equal(value, lm.params[mapping[key]]), key
        else:
            assert np.array_equal(value, before[key]), f"{key} changed but is not mapped"
    # what the map holds, spelled out
    if target.endswith("classifier"):
        stack, side = ("decoder", "tgt") if target.startswith("decoder") else ("encoder", "src")
        assert mapping[f"{side}_embed.W"] == "tgt_embed.W"
        assert mapping[f"{side}_pos.W"] == "tgt_pos.W"
        assert mapping[f"{stack}.1.ffn.W_2"] == "decoder.1.ffn.W_2"
        assert mapping[f"{stack}.norm.gamma"] == "decoder.norm.gamma"
        assert set(model.params) - set(mapping) == {"head.W", "head.b"}
    if target == "translator":
        assert mapping["decoder.0.norm3.gamma"] == "decoder.0.norm2.gamma"
        assert mapping["encoder.1.norm2.beta"] == "decoder.1.norm2.beta"
        assert mapping["out.b"] == "out.b" and mapping["src_embed.W"] == "tgt_embed.W"
        assert not any(".cross_attn." in k or ".norm2." in k for k in mapping
                       if k.startswith("decoder."))
    if target == "translator decoder only":
        assert not any(k.startswith(("encoder.", "src_")) for k in mapping)
        assert "tgt_pos.W" not in mapping  # the translator has sinusoidal positions
    if target == "deeper translator":  # layers up to the smaller depth
        assert "encoder.1.self_attn.W_qkv" in mapping and "encoder.2.self_attn.W_qkv" not in mapping


@pytest.mark.parametrize("changes,message", [
    (dict(d_model=8, n_heads=2), r"encoder\.0\.self_attn\.W_qkv has shape \(8, 24\)"),
    (dict(src_vocab_size=23, tgt_vocab_size=23), r"src_embed\.W has shape \(23, 16\)"),
    (dict(max_len=16, positional="learned"), r"src_pos\.W has shape \(16, 16\)"),
])
def test_load_pretrained_refuses_other_sizes(changes, message):
    lm = pretrained_lm()
    model = build_model(ModelConfig(**{**ENCODER, **changes}))
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(ValueError, match=message) as err:
        load_pretrained(model, lm)
    assert "must match the LM's" in str(err.value)
    assert all(np.array_equal(v, before[k]) for k, v in model.params.items())  # nothing copied


def test_load_pretrained_only_from_a_language_model():
    clf = build_model(ModelConfig(**{**LM, "n_classes": 2}))
    model = build_model(ModelConfig(**ENCODER))
    with pytest.raises(ValueError, match="pretrained language model"):
        load_pretrained(model, clf)


def test_weight_change_measures_by_hand():
    """The measures of npformer.tools.weight_change on a change of rank 2, worked by hand.

    Energy 1 in the top 2, effective rank 2 (equal singular values), the rank-2 truncation
    is exact and the rank-1 one has rank 1.
    """
    from npformer.tools import weight_change as wc

    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    V_, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    before = {"decoder.0.ffn.W_1": rng.normal(size=(6, 4)), "head.W": rng.normal(size=(6, 2))}
    change = 3.0 * np.outer(U[:, 0], V_[0]) + 3.0 * np.outer(U[:, 1], V_[1])
    after = {"decoder.0.ffn.W_1": before["decoder.0.ffn.W_1"] + change,
             "head.W": before["head.W"] + 1.0}
    assert wc.matrix_keys(after) == ["decoder.0.ffn.W_1"]
    s = wc.spectrum(before, after, "decoder.0.ffn.W_1")
    assert_close("singular values", s, np.array([3.0, 3.0, 0, 0]), 1e-12, 1e-12)
    assert wc.energy_in_top(s, 1) == pytest.approx(0.5) and wc.energy_in_top(s, 2) == 1.0
    assert wc.effective_rank(s) == pytest.approx(2.0)
    exact = wc.low_rank_update(before, after, 2)
    assert_close("rank 2", exact["decoder.0.ffn.W_1"], after["decoder.0.ffn.W_1"], 1e-12, 1e-12)
    assert np.array_equal(exact["head.W"], after["head.W"])  # not a body matrix: untouched
    one = wc.low_rank_update(before, after, 1)["decoder.0.ffn.W_1"] - before["decoder.0.ffn.W_1"]
    assert np.linalg.matrix_rank(one, tol=1e-9) == 1
    assert wc.relative_change(before, after)["layer 0 feed-forward"] == pytest.approx(
        np.linalg.norm(change) / np.linalg.norm(before["decoder.0.ffn.W_1"]))


def test_body_as_language_model_round_trip_and_features():
    """A classifier started from an LM gives back exactly that LM; a changed body changes it."""
    from npformer.models.pretrained import body_as_language_model

    lm = shifted(LanguageModel(ModelConfig(**LM)))
    clf = Classifier(ModelConfig(**{**LM, "n_classes": 2, "pooling": "before_eos"}))
    load_pretrained(clf, lm, ("decoder",))
    ids = np.array([[1, 5, 6, 7, 2]])
    back = body_as_language_model(clf, lm)
    assert_close("same LM", back.forward(ids), lm.forward(ids), 1e-14, 1e-14)
    clf.params["decoder.0.ffn.W_1"] += 0.1
    assert np.abs(body_as_language_model(clf, lm).forward(ids) - lm.forward(ids)).max() > 1e-6
    assert lm.params["decoder.0.ffn.W_1"] is not back.params["decoder.0.ffn.W_1"]
    features = clf.features(ids)
    assert features.shape == (1, LM["d_model"])
    tape = Tape()
    clf.forward(ids, tape=tape)
    head = next(r for r in tape.records if r.name == "head")
    assert_close("features = the head's input", features, head.cache.x, 0, 0)
