"""The model boundary: config validation, input checks, masks doing their job."""
import numpy as np
import pytest
from helpers import assert_close, tiny_model, toy_batch

from npformer.nn.config import ConfigError, ModelConfig
from npformer.models.transformer import Transformer
from npformer.nn.params import init_params, upgrade_legacy_params


@pytest.mark.parametrize("changes,field", [
    (dict(d_model=30, n_heads=4), "d_model"),
    (dict(dropout=1.0), "dropout"),
    (dict(activation="tanh"), "activation"),
    (dict(norm_position="middle"), "norm_position"),
    (dict(n_encoder_layers=0), "n_encoder_layers"),
    (dict(share_embeddings=True, src_vocab_size=10, tgt_vocab_size=11), "share_embeddings"),
    (dict(pad_id=10, src_vocab_size=10), "pad_id"),
    (dict(dtype="float16"), "dtype"),
])
def test_config_errors_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**changes)


def test_config_round_trips_and_rejects_unknown_fields():
    cfg = ModelConfig(d_model=32, n_heads=2)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown"):
        ModelConfig.from_dict({**cfg.to_dict(), "d_modle": 3})


def test_parameter_names_shapes_and_count():
    cfg = ModelConfig(src_vocab_size=50, tgt_vocab_size=60, d_model=16, n_heads=2, d_ff=32,
                      n_encoder_layers=2, n_decoder_layers=3)
    params = init_params(cfg)
    C, F = 16, 32
    attn = 4 * (C * C + C)  # Q, K, V and output projections, packed or not
    norm = 2 * C
    ffn = C * F + F + F * C + C
    expected = (50 * C + 60 * C + 2 * (attn + ffn + 2 * norm) + 3 * (2 * attn + ffn + 3 * norm)
                + 2 * norm + 60)  # final norms, output bias (output weight tied)
    assert Transformer(cfg).n_params == expected
    assert params["encoder.0.self_attn.W_qkv"].shape == (C, 3 * C)
    assert params["encoder.0.self_attn.b_qkv"].shape == (3 * C,)
    assert params["decoder.2.cross_attn.W_q"].shape == (C, C)
    assert params["decoder.2.cross_attn.W_kv"].shape == (C, 2 * C)
    assert params["decoder.2.self_attn.W_o"].shape == (C, C)
    assert params["encoder.1.ffn.W_1"].shape == (C, F)
    assert "out.W" not in params and params["out.b"].shape == (60,)
    assert all(v.dtype == np.float32 for v in params.values())
    assert not params["src_embed.W"][cfg.pad_id].any()  # padding row starts at zero


@pytest.mark.parametrize("bad,message", [
    (np.array([[1, 2, 17]]), "out of range"),
    (np.array([[1, -1]]), "out of range"),
    (np.array([1, 2, 3]), "shape"),
    (np.array([[1.0, 2.0]]), "integers"),
    (np.ones((1, 13), dtype=int), "max_len"),
])
def test_bad_token_ids_fail_at_the_boundary(bad, message):
    model = tiny_model()
    with pytest.raises(ValueError, match=message):
        model.forward(bad, np.array([[1, 2]]))


def test_batch_mismatch_is_reported():
    model = tiny_model()
    src, tgt_in, tgt_out = toy_batch()
    with pytest.raises(ValueError, match="batch mismatch"):
        model.forward(src, tgt_in[:2])
    with pytest.raises(ValueError, match="tgt_out shape"):
        model.loss(src, tgt_in, tgt_out[:, :3])


def test_loaded_params_must_match_config():
    model = tiny_model()
    params = dict(model.params)
    params["encoder.0.ffn.W_1"] = params["encoder.0.ffn.W_1"][:, :5]
    with pytest.raises(ValueError, match="encoder.0.ffn.W_1"):
        Transformer(model.config, params)


def test_decoder_is_causal():
    """Changing a later target token never changes the logits at earlier positions."""
    model = tiny_model()
    src, tgt_in, _ = toy_batch()
    a = model.forward(src, tgt_in)
    changed = tgt_in.copy()
    changed[0, 3] = 9
    b = model.forward(src, changed)
    assert_close("logits before the change", b[0, :3], a[0, :3], 1e-12)
    assert np.abs(b[0, 3:] - a[0, 3:]).max() > 1e-6


def test_source_padding_is_invisible():
    """Appending padding to the source leaves every logit unchanged."""
    model = tiny_model()
    src, tgt_in, _ = toy_batch()
    padded = np.concatenate([src, np.zeros((3, 4), dtype=src.dtype)], axis=1)
    assert_close("logits", model.forward(padded, tgt_in), model.forward(src, tgt_in), 1e-12)


def test_attention_maps_are_distributions_that_respect_masks():
    model = tiny_model()
    src, tgt_in, _ = toy_batch()
    maps = model.attention_maps(src, tgt_in)
    assert set(maps) == {"encoder.0.self_attn", "encoder.1.self_attn", "decoder.0.self_attn",
                         "decoder.1.self_attn", "decoder.0.cross_attn", "decoder.1.cross_attn"}
    cross = maps["decoder.0.cross_attn"]  # (B,H,T,S)
    assert cross.shape == (3, 4, 5, 5)
    assert_close("row sums", cross.sum(-1), np.ones((3, 4, 5)), 1e-12)
    assert not cross[1, :, :, 3:].any()  # source row 1 has 2 padding positions at the end
    self_attn = maps["decoder.0.self_attn"]
    assert not np.triu(self_attn[0, 0], k=1).any()  # nothing above the diagonal: no future


def test_padding_row_of_embedding_gets_no_gradient():
    from npformer.nn.tape import Tape

    model = tiny_model(tie_output=False)
    src, tgt_in, tgt_out = toy_batch()
    tape = Tape()
    model.loss(src, tgt_in, tgt_out, tape=tape)
    tape.backward(model.grads, "loss")
    assert not model.grads["src_embed.W"][0].any()
    assert not model.grads["tgt_embed.W"][0].any()
    assert model.grads["src_embed.W"][5].any()


def test_training_mode_needs_rng_and_dropout_is_seeded():
    model = tiny_model(dropout=0.3)
    src, tgt_in, tgt_out = toy_batch()
    with pytest.raises(ValueError, match="rng"):
        model.loss(src, tgt_in, tgt_out, train=True)
    a = model.loss(src, tgt_in, tgt_out, train=True, rng=np.random.default_rng(5))
    b = model.loss(src, tgt_in, tgt_out, train=True, rng=np.random.default_rng(5))
    c = model.loss(src, tgt_in, tgt_out, train=True, rng=np.random.default_rng(6))
    d = model.loss(src, tgt_in, tgt_out)  # eval mode: no dropout
    assert a == b and a != c and a != d


def legacy_params(cfg):
    """A parameter dict in the layout before Q|K|V packing (separate W_q/b_q/W_k/...).

    Built by splitting today's packed matrices, so the two must give the same model.
    """
    old = {}
    for key, value in init_params(cfg).items():
        prefix, name = key.rsplit(".", 1)
        packed = {"W_qkv": "qkv", "b_qkv": "qkv", "W_kv": "kv", "b_kv": "kv"}.get(name)
        if packed is None:
            old[key] = value
            continue
        for part, piece in zip(packed, np.split(value, len(packed), axis=-1)):
            old[f"{prefix}.{name[0]}_{part}"] = np.ascontiguousarray(piece)
    return old


def test_legacy_parameters_are_upgraded_to_the_packed_layout():
    model = tiny_model(dtype="float64", norm_position="post", tie_output=False)
    cfg = model.config
    old = legacy_params(cfg)
    assert "encoder.0.self_attn.W_k" in old and "decoder.1.cross_attn.b_v" in old
    assert "encoder.0.self_attn.W_qkv" not in old
    with pytest.raises(ValueError, match="upgrade_legacy_params"):
        Transformer(cfg, old)  # strict: the model itself does not convert
    new = upgrade_legacy_params(old, cfg)
    assert set(new) == set(model.params)
    for key, value in model.params.items():
        assert_close(key, new[key], value, 0.0)  # exactly the packed arrays
    src, tgt_in, _ = toy_batch()
    assert_close("logits", Transformer(cfg, new).forward(src, tgt_in),
                 model.forward(src, tgt_in), 0.0)
    assert upgrade_legacy_params(model.params, cfg) is model.params  # already new: unchanged


def test_upgrade_rejects_parameters_of_neither_layout():
    cfg = tiny_model().config
    old = legacy_params(cfg)
    del old["decoder.0.cross_attn.W_v"]
    with pytest.raises(ValueError, match="cross_attn.W_v"):
        upgrade_legacy_params(old, cfg)
    with pytest.raises(ValueError, match="neither"):
        upgrade_legacy_params({"encoder.0.ffn.W_1": np.zeros((16, 24))}, cfg)
    with pytest.raises(ValueError, match="neither"):
        upgrade_legacy_params({**init_params(cfg), "extra.W": np.zeros(3)}, cfg)
