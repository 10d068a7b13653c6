"""Starting a model from a pretrained language model's weights.

A decoder-only LM's embedding and blocks can start a classifier's body or a
translator's encoder and decoder: `pretrained_key_map` says which weight goes where,
`load_pretrained` copies them; `body_as_language_model` copies a fine-tuned body
back into the LM, to measure what fine-tuning made it forget. docs/language_models.md
measures what it gains.
"""
from ..nn.params import embedding_keys, param_specs


def pretrained_key_map(config, pretrained, parts=("encoder", "decoder")):
    """{key in a model of `config`: key in `pretrained` (a LanguageModel's config)} to copy.

    A pretrained decoder-only LM can start
      - a classifier with a decoder-only body: every body weight, under the same name;
      - a classifier with an encoder-only body: the same weights as encoder layers;
      - a translator: its encoder and/or decoder (`parts`); the decoder's cross-attention
        (which the LM does not have) keeps its fresh initialisation, and the LM's
        feed-forward norm "norm2" becomes the decoder layer's "norm3".
    Layers are copied up to the smaller depth. Raises ValueError when the shapes differ.
    """
    if pretrained.kind != "decoder-only" or pretrained.n_classes:
        raise ValueError("weights can only be taken from a pretrained language model "
                         f"(decoder-only), not from a {pretrained.kind} model with "
                         f"n_classes={pretrained.n_classes}")
    source = param_specs(pretrained)
    target = param_specs(config)
    lm_embed = embedding_keys(pretrained)[1]

    def stack(name, renames=()):
        mapping = {}
        for i in range(min(pretrained.n_decoder_layers, getattr(
                config, "n_encoder_layers" if name == "encoder" else "n_decoder_layers"))):
            for key in source:
                if key.startswith(f"decoder.{i}."):
                    tail = key[len(f"decoder.{i}."):]
                    for old, new in renames:
                        tail = tail.replace(old, new)
                    mapping[f"{name}.{i}.{tail}"] = key
        if "decoder.norm.gamma" in source:
            mapping.update({f"{name}.norm.gamma": "decoder.norm.gamma",
                            f"{name}.norm.beta": "decoder.norm.beta"})
        return mapping

    mapping = {}
    src_key, tgt_key = embedding_keys(config)
    if config.kind == "encoder-decoder":
        if "encoder" in parts:
            mapping.update(stack("encoder"))
            mapping[src_key] = lm_embed
        if "decoder" in parts:
            mapping.update(stack("decoder", [("norm2.", "norm3.")]))
            mapping[tgt_key] = lm_embed
            mapping.update({k: k for k in ("out.W", "out.b") if k in source and k in target})
    elif config.kind == "decoder-only":
        mapping.update(stack("decoder"))
        mapping[tgt_key] = lm_embed
    else:
        mapping.update(stack("encoder"))
        mapping[src_key] = lm_embed
    for side in ("src", "tgt"):
        if f"{side}_pos.W" in target and "tgt_pos.W" in source:
            mapping[f"{side}_pos.W"] = "tgt_pos.W"
    mapping = {k: v for k, v in mapping.items() if k in target}
    for key, from_key in mapping.items():
        if target[key].shape != source[from_key].shape:
            raise ValueError(f"{key} has shape {target[key].shape} but the pretrained "
                             f"{from_key} has {source[from_key].shape}: the model sizes "
                             "(d_model, d_ff, vocabulary, max_len) must match the LM's")
    return mapping


def load_pretrained(model, pretrained, parts=("encoder", "decoder")):
    """Copy a pretrained LanguageModel's weights into `model`; returns the keys copied."""
    mapping = pretrained_key_map(model.config, pretrained.config, parts)
    for key, from_key in mapping.items():
        model.params[key][...] = pretrained.params[from_key]
    return sorted(mapping)


def body_as_language_model(model, pretrained):
    """The language model `pretrained` with its body replaced by `model`'s (e.g. fine-tuned).

    Every weight that `load_pretrained` would copy from the LM into `model` is copied
    back; the rest (the LM's output bias, which a classifier does not have) stays the
    LM's. Its loss on text, against the LM's, measures what fine-tuning made the body
    forget (notebook 11). Only a decoder-only `model` (the same stack): raises ValueError.
    """
    from . import build_model

    if model.config.kind != "decoder-only":
        raise ValueError(f"a {model.config.kind} body is not a language model's stack")
    mapping = pretrained_key_map(model.config, pretrained.config, ("decoder",))
    params = {key: value.copy() for key, value in pretrained.params.items()}
    for key, from_key in mapping.items():
        params[from_key][...] = model.params[key]
    return build_model(pretrained.config, params)
