"""PyTorch re-implementation of npformer's transformer: an independent oracle.

torch is NOT a runtime dependency of npformer. This module is imported only by
tests (tests/test_torch_oracle.py) and benchmarks, which need the `test` extra
(`pip install npformer[test]`); nothing in the npformer package imports it.

`TorchTransformer` is written the way a PyTorch user would write it (modules,
nn.Linear / nn.LayerNorm / nn.Embedding, F.scaled_dot_product_attention,
F.cross_entropy) and lets autograd find the gradients. It computes the same
function as `npformer.models.transformer.Transformer` for the same `ModelConfig`:

  x = Dropout(Embed(src) * sqrt(C) + Pos)                  encoder input
  pre-LN:  x = x + Dropout(Sublayer(LN(x))), final LN per stack
  post-LN: x = LN(x + Dropout(Sublayer(x))), no final LN
  encoder layer: self-attention (source padding mask), feed-forward
  decoder layer: self-attention (causal & target padding), cross-attention
                 (source padding), feed-forward
  logits = h W_out + b (or h E_tgt^T + b when tied), mean smoothed cross-entropy
           over non-padding targets.
No dropout on attention weights. `TorchLanguageModel` (decoder-only) and
`TorchClassifier` (decoder-only or encoder-only body, pooled, linear head) are the
other two kinds of npformer.models.base, built from the same EncoderLayer: a GPT layer
is an encoder layer with a causal mask. The padding row of each embedding gets no
gradient from the lookup (nn.Embedding(padding_idx=pad)); with a tied output it
still gets the output projection's gradient, exactly as in npformer.

Layouts: npformer stores weights as (in, out) and computes x @ W; nn.Linear
stores (out, in). `from_npformer` / `grads_to_npformer` / `params_to_npformer`
transpose across that boundary; the key mapping lives in `npformer_keys`.

Usage:
    tm = from_npformer(model)                      # same weights, same dtype, same kind
    loss = tm.loss(src, tgt_in, tgt_out, label_smoothing=0.1)   # a translator
    loss = tm.loss(ids_in, ids_out)                # a language model
    loss = tm.loss(ids, labels)                    # a classifier
    loss.backward()
    grads = grads_to_npformer(tm)                  # {npformer key: ndarray}
    opt = torch.optim.AdamW(param_groups(tm, weight_decay=0.01), lr=1e-3)

Shapes: B batch, S source len, T target len, C d_model, H heads,
D head dim (C = H*D), F d_ff, V vocab, L max_len, K classes.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nn.config import ModelConfig

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def sinusoid_positions(max_len, d_model):
    """P[pos, 2i] = sin(pos / 10000^(2i/C)), P[pos, 2i+1] = cos(...), in float64.

    Shapes: -> (L,C)
    """
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (L,1)
    freq = torch.pow(10000.0, -torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    angle = pos * freq  # (L,C/2)
    table = torch.zeros(max_len, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return table


def attend(q, k, v, allowed, n_heads):
    """Multi-head scaled dot-product attention over projected q, k, v.

    Shapes: q (B,T,C), k (B,S,C), v (B,S,C), allowed (B,1|T,S) bool -> ctx (B,T,C)
    """
    B, T, C = q.shape
    S, H = k.shape[1], n_heads
    q = q.reshape(B, T, H, C // H).transpose(1, 2)  # (B,T,C) -> (B,H,T,D)
    k = k.reshape(B, S, H, C // H).transpose(1, 2)  # (B,S,C) -> (B,H,S,D)
    v = v.reshape(B, S, H, C // H).transpose(1, 2)  # (B,S,C) -> (B,H,S,D)
    # bool mask, True = may attend (npformer's convention too); a row with
    # nothing allowed gives zeros, as npformer's softmax does
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])  # (B,H,T,D)
    return ctx.transpose(1, 2).reshape(B, T, C)  # (B,H,T,D) -> (B,T,C)


class SelfAttention(nn.Module):
    """Queries, keys and values from x, with one packed [Q|K|V] projection (nanoGPT's c_attn)."""

    def __init__(self, cfg, **factory):
        super().__init__()
        C = cfg.d_model
        self.n_heads = cfg.n_heads
        self.qkv_proj = nn.Linear(C, 3 * C, **factory)
        self.out_proj = nn.Linear(C, C, **factory)

    def forward(self, x, allowed):
        """Shapes: x (B,T,C), allowed (B,1|T,T) bool -> (B,T,C)"""
        q, k, v = self.qkv_proj(x).chunk(3, dim=-1)  # (B,T,3C) -> 3 x (B,T,C)
        return self.out_proj(attend(q, k, v, allowed, self.n_heads))


class CrossAttention(nn.Module):
    """Queries from x, keys and values from the encoder memory (one packed [K|V] projection)."""

    def __init__(self, cfg, **factory):
        super().__init__()
        C = cfg.d_model
        self.n_heads = cfg.n_heads
        self.q_proj = nn.Linear(C, C, **factory)
        self.kv_proj = nn.Linear(C, 2 * C, **factory)
        self.out_proj = nn.Linear(C, C, **factory)

    def forward(self, x, memory, allowed):
        """Shapes: x (B,T,C), memory (B,S,C), allowed (B,1|T,S) bool -> (B,T,C)"""
        k, v = self.kv_proj(memory).chunk(2, dim=-1)  # (B,S,2C) -> 2 x (B,S,C)
        return self.out_proj(attend(self.q_proj(x), k, v, allowed, self.n_heads))


class FeedForward(nn.Module):
    def __init__(self, cfg, **factory):
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_ff, **factory)
        self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model, **factory)
        self.activation = cfg.activation

    def forward(self, x):
        """Shapes: (B,L,C) -> (B,L,F) -> (B,L,C)"""
        h = self.fc1(x)
        h = F.relu(h) if self.activation == "relu" else F.gelu(h, approximate="tanh")
        return self.fc2(h)


class Sublayer(nn.Module):
    """Residual wrapper: pre-LN x + drop(f(LN(x))) or post-LN LN(x + drop(f(x)))."""

    def __init__(self, cfg, **factory):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps, **factory)
        self.pre = cfg.norm_position == "pre"
        self.p = cfg.dropout

    def forward(self, x, f):
        if self.pre:
            return x + F.dropout(f(self.norm(x)), self.p, self.training)
        return self.norm(x + F.dropout(f(x), self.p, self.training))


class EncoderLayer(nn.Module):
    def __init__(self, cfg, **factory):
        super().__init__()
        self.self_attn = SelfAttention(cfg, **factory)
        self.ffn = FeedForward(cfg, **factory)
        self.sub1 = Sublayer(cfg, **factory)  # norm1
        self.sub2 = Sublayer(cfg, **factory)  # norm2

    def forward(self, x, src_allowed):
        x = self.sub1(x, lambda h: self.self_attn(h, src_allowed))
        return self.sub2(x, self.ffn)


class DecoderLayer(nn.Module):
    def __init__(self, cfg, **factory):
        super().__init__()
        self.self_attn = SelfAttention(cfg, **factory)
        self.cross_attn = CrossAttention(cfg, **factory)
        self.ffn = FeedForward(cfg, **factory)
        self.sub1 = Sublayer(cfg, **factory)  # norm1
        self.sub2 = Sublayer(cfg, **factory)  # norm2
        self.sub3 = Sublayer(cfg, **factory)  # norm3

    def forward(self, y, memory, self_allowed, cross_allowed):
        y = self.sub1(y, lambda h: self.self_attn(h, self_allowed))
        y = self.sub2(y, lambda h: self.cross_attn(h, memory, cross_allowed))
        return self.sub3(y, self.ffn)


class TorchTransformer(nn.Module):
    """The npformer encoder-decoder, in PyTorch. Built from a ModelConfig."""

    def __init__(self, cfg):
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        factory = {"dtype": TORCH_DTYPES[cfg.dtype]}
        C, pad = cfg.d_model, cfg.pad_id
        if cfg.share_embeddings:
            self.embed = nn.Embedding(cfg.src_vocab_size, C, padding_idx=pad, **factory)
            self.src_embed = self.tgt_embed = self.embed  # one module, one parameter
        else:
            self.src_embed = nn.Embedding(cfg.src_vocab_size, C, padding_idx=pad, **factory)
            self.tgt_embed = nn.Embedding(cfg.tgt_vocab_size, C, padding_idx=pad, **factory)
        if cfg.positional == "learned":
            self.src_pos = nn.Parameter(torch.zeros(cfg.max_len, C, **factory))
            self.tgt_pos = nn.Parameter(torch.zeros(cfg.max_len, C, **factory))
        else:
            table = sinusoid_positions(cfg.max_len, C).to(factory["dtype"])
            self.register_buffer("src_pos", table, persistent=False)
            self.register_buffer("tgt_pos", table, persistent=False)
        self.encoder = nn.ModuleList(EncoderLayer(cfg, **factory)
                                     for _ in range(cfg.n_encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg, **factory)
                                     for _ in range(cfg.n_decoder_layers))
        if cfg.norm_position == "pre":
            self.encoder_norm = nn.LayerNorm(C, eps=cfg.ln_eps, **factory)
            self.decoder_norm = nn.LayerNorm(C, eps=cfg.ln_eps, **factory)
        if not cfg.tie_output:
            self.out_weight = nn.Parameter(torch.zeros(cfg.tgt_vocab_size, C, **factory))
        self.out_bias = nn.Parameter(torch.zeros(cfg.tgt_vocab_size, **factory))

    def _embed(self, ids, embed, pos):
        """Shapes: ids (B,L) -> (B,L,C)"""
        x = embed(ids) * math.sqrt(self.cfg.d_model) + pos[: ids.shape[1]]
        return F.dropout(x, self.cfg.dropout, self.training)

    def encode(self, src):
        """Shapes: src (B,S) -> memory (B,S,C)"""
        src_allowed = (src != self.cfg.pad_id)[:, None, :]  # (B,1,S)
        x = self._embed(src, self.src_embed, self.src_pos)
        for layer in self.encoder:
            x = layer(x, src_allowed)
        if self.cfg.norm_position == "pre":
            x = self.encoder_norm(x)
        return x

    def decode(self, tgt_in, memory, src):
        """Final decoder hidden state (before the output projection).

        Shapes: tgt_in (B,T), memory (B,S,C), src (B,S) -> (B,T,C)
        """
        T = tgt_in.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=tgt_in.device).tril()  # (T,T)
        self_allowed = causal[None] & (tgt_in != self.cfg.pad_id)[:, None, :]  # (B,T,T)
        cross_allowed = (src != self.cfg.pad_id)[:, None, :]  # (B,1,S)
        y = self._embed(tgt_in, self.tgt_embed, self.tgt_pos)
        for layer in self.decoder:
            y = layer(y, memory, self_allowed, cross_allowed)
        if self.cfg.norm_position == "pre":
            y = self.decoder_norm(y)
        return y

    def project(self, h):
        """Shapes: h (B,T,C) -> logits (B,T,V)"""
        W = self.tgt_embed.weight if self.cfg.tie_output else self.out_weight  # (V,C)
        return F.linear(h, W, self.out_bias)

    def forward(self, src, tgt_in):
        """Shapes: src (B,S), tgt_in (B,T) int -> logits (B,T,V)"""
        src, tgt_in = as_ids(src), as_ids(tgt_in)
        return self.project(self.decode(tgt_in, self.encode(src), src))

    def loss(self, src, tgt_in, tgt_out, label_smoothing=0.0):
        """Mean smoothed cross-entropy over non-padding targets (a 0-d tensor)."""
        logits = self.forward(src, tgt_in)  # (B,T,V)
        return F.cross_entropy(logits.flatten(0, 1), as_ids(tgt_out).flatten(),
                               ignore_index=self.cfg.pad_id, label_smoothing=label_smoothing)


class SelfAttentionBody(nn.Module):
    """Embedding, positions, self-attention layers, final LN (pre-LN): a GPT or BERT body.

    causal=True: npformer's "decoder" stack of a decoder-only model (target embedding,
    causal & padding mask); False: the "encoder" stack of an encoder-only classifier
    (source embedding, padding mask only).
    """

    def __init__(self, cfg, causal, **factory):
        super().__init__()
        self.cfg, self.causal = cfg, causal
        C = cfg.d_model
        vocab = cfg.tgt_vocab_size if causal else cfg.src_vocab_size
        self.embed = nn.Embedding(vocab, C, padding_idx=cfg.pad_id, **factory)
        if cfg.positional == "learned":
            self.pos = nn.Parameter(torch.zeros(cfg.max_len, C, **factory))
        else:
            self.register_buffer("pos", sinusoid_positions(cfg.max_len, C).to(factory["dtype"]),
                                 persistent=False)
        n_layers = cfg.n_decoder_layers if causal else cfg.n_encoder_layers
        self.layers = nn.ModuleList(EncoderLayer(cfg, **factory) for _ in range(n_layers))
        if cfg.norm_position == "pre":
            self.norm = nn.LayerNorm(C, eps=cfg.ln_eps, **factory)

    def forward(self, ids):
        """Shapes: ids (B,T) -> (B,T,C)"""
        T = ids.shape[1]
        allowed = (ids != self.cfg.pad_id)[:, None, :]  # (B,1,T)
        if self.causal:
            causal = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()  # (T,T)
            allowed = causal[None] & allowed  # (B,T,T)
        x = self.embed(ids) * math.sqrt(self.cfg.d_model) + self.pos[:T]
        x = F.dropout(x, self.cfg.dropout, self.training)
        for layer in self.layers:
            x = layer(x, allowed)
        if self.cfg.norm_position == "pre":
            x = self.norm(x)
        return x


class TorchLanguageModel(nn.Module):
    """npformer's decoder-only LanguageModel, in PyTorch: a causal body and the output layer."""

    def __init__(self, cfg):
        super().__init__()
        if not isinstance(cfg, ModelConfig) or cfg.kind != "decoder-only" or cfg.n_classes:
            raise ValueError("TorchLanguageModel needs a decoder-only ModelConfig without "
                             "n_classes")
        self.cfg = cfg
        factory = {"dtype": TORCH_DTYPES[cfg.dtype]}
        self.body = SelfAttentionBody(cfg, causal=True, **factory)
        if not cfg.tie_output:
            self.out_weight = nn.Parameter(torch.zeros(cfg.tgt_vocab_size, cfg.d_model,
                                                       **factory))
        self.out_bias = nn.Parameter(torch.zeros(cfg.tgt_vocab_size, **factory))

    def forward(self, ids):
        """Shapes: ids (B,T) int -> logits (B,T,V)"""
        W = self.body.embed.weight if self.cfg.tie_output else self.out_weight  # (V,C)
        return F.linear(self.body(as_ids(ids)), W, self.out_bias)

    def loss(self, ids_in, ids_out, label_smoothing=0.0):
        """Mean smoothed next-token cross-entropy over non-padding targets (a 0-d tensor)."""
        logits = self.forward(ids_in)  # (B,T,V)
        return F.cross_entropy(logits.flatten(0, 1), as_ids(ids_out).flatten(),
                               ignore_index=self.cfg.pad_id, label_smoothing=label_smoothing)


class TorchClassifier(nn.Module):
    """npformer's Classifier, in PyTorch: a causal or bidirectional body, pooling, linear head."""

    def __init__(self, cfg):
        super().__init__()
        if not isinstance(cfg, ModelConfig) or not cfg.n_classes:
            raise ValueError("TorchClassifier needs a ModelConfig with n_classes")
        self.cfg = cfg
        factory = {"dtype": TORCH_DTYPES[cfg.dtype]}
        self.body = SelfAttentionBody(cfg, causal=cfg.kind == "decoder-only", **factory)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes, **factory)

    def pool(self, h, ids):
        """One vector per sequence (padding is at the end of a row). Shapes: (B,T,C) -> (B,C)"""
        real = (ids != self.cfg.pad_id).to(h.dtype)  # (B,T)
        if self.cfg.pooling == "mean":
            return (h * real[:, :, None]).sum(1) / real.sum(1, keepdim=True)
        if self.cfg.pooling == "first":
            return h[:, 0]
        last = real.sum(1).long() - 1  # (B,) the last real token of each row
        if self.cfg.pooling == "before_eos":
            last = (last - 1).clamp(min=0)  # (B,) the token before it
        return h[torch.arange(h.shape[0]), last]

    def forward(self, ids):
        """Shapes: ids (B,T) int -> class logits (B,K)"""
        ids = as_ids(ids)
        return self.head(self.pool(self.body(ids), ids))

    def loss(self, ids, labels, label_smoothing=0.0):
        """Mean smoothed cross-entropy of the labels (a 0-d tensor). Shapes: labels (B,)"""
        return F.cross_entropy(self.forward(ids), as_ids(labels),
                               label_smoothing=label_smoothing)


def torch_model_for(cfg):
    """The torch class of the npformer model a config describes (model.build_model's twin)."""
    if cfg.n_classes:
        return TorchClassifier(cfg)
    if cfg.kind == "decoder-only":
        return TorchLanguageModel(cfg)
    return TorchTransformer(cfg)


def as_ids(ids):
    """numpy or torch integer ids -> int64 tensor."""
    if isinstance(ids, torch.Tensor):
        return ids.long()
    return torch.from_numpy(np.asarray(ids, dtype=np.int64))


# --------------------------------------------------------------- npformer bridge
_ATTN = {"qkv_proj": "qkv", "q_proj": "q", "kv_proj": "kv", "out_proj": "o"}  # -> W_qkv, ...


def npformer_keys(tm):
    """{npformer key: (torch parameter, transposed?)} for every npformer parameter.

    transposed=True: the npformer array is (in, out) = the torch weight's .T
    """
    cfg = tm.cfg
    keys = {}

    def attention(prefix, mha):
        for module_name, s in _ATTN.items():
            linear = getattr(mha, module_name, None)
            if linear is None:
                continue  # self-attention has no q_proj/kv_proj, cross-attention no qkv_proj
            keys[f"{prefix}.W_{s}"] = (linear.weight, True)
            keys[f"{prefix}.b_{s}"] = (linear.bias, False)

    def norm(prefix, ln):
        keys[prefix + ".gamma"] = (ln.weight, False)
        keys[prefix + ".beta"] = (ln.bias, False)

    def ffn(prefix, ff):
        keys[prefix + ".W_1"] = (ff.fc1.weight, True)
        keys[prefix + ".b_1"] = (ff.fc1.bias, False)
        keys[prefix + ".W_2"] = (ff.fc2.weight, True)
        keys[prefix + ".b_2"] = (ff.fc2.bias, False)

    def self_attention_layer(prefix, layer):  # an EncoderLayer: "encoder.i" or "decoder.i"
        attention(f"{prefix}.self_attn", layer.self_attn)
        norm(f"{prefix}.norm1", layer.sub1.norm)
        ffn(f"{prefix}.ffn", layer.ffn)
        norm(f"{prefix}.norm2", layer.sub2.norm)

    if not isinstance(tm, TorchTransformer):  # a decoder-only or encoder-only body
        stack, side = ("decoder", "tgt") if tm.body.causal else ("encoder", "src")
        keys[f"{side}_embed.W"] = (tm.body.embed.weight, False)
        if cfg.positional == "learned":
            keys[f"{side}_pos.W"] = (tm.body.pos, False)
        for i, layer in enumerate(tm.body.layers):
            self_attention_layer(f"{stack}.{i}", layer)
        if cfg.norm_position == "pre":
            norm(f"{stack}.norm", tm.body.norm)
        if isinstance(tm, TorchClassifier):
            keys["head.W"] = (tm.head.weight, True)
            keys["head.b"] = (tm.head.bias, False)
            return keys
        if not cfg.tie_output:
            keys["out.W"] = (tm.out_weight, True)
        keys["out.b"] = (tm.out_bias, False)
        return keys

    if cfg.share_embeddings:
        keys["embed.W"] = (tm.embed.weight, False)
    else:
        keys["src_embed.W"] = (tm.src_embed.weight, False)
        keys["tgt_embed.W"] = (tm.tgt_embed.weight, False)
    if cfg.positional == "learned":
        keys["src_pos.W"] = (tm.src_pos, False)
        keys["tgt_pos.W"] = (tm.tgt_pos, False)
    for i, layer in enumerate(tm.encoder):
        self_attention_layer(f"encoder.{i}", layer)
    for i, layer in enumerate(tm.decoder):
        attention(f"decoder.{i}.self_attn", layer.self_attn)
        norm(f"decoder.{i}.norm1", layer.sub1.norm)
        attention(f"decoder.{i}.cross_attn", layer.cross_attn)
        norm(f"decoder.{i}.norm2", layer.sub2.norm)
        ffn(f"decoder.{i}.ffn", layer.ffn)
        norm(f"decoder.{i}.norm3", layer.sub3.norm)
    if cfg.norm_position == "pre":
        norm("encoder.norm", tm.encoder_norm)
        norm("decoder.norm", tm.decoder_norm)
    if not cfg.tie_output:
        keys["out.W"] = (tm.out_weight, True)
    keys["out.b"] = (tm.out_bias, False)
    return keys


def from_npformer(model):
    """A torch model of the same kind (torch_model_for) holding a copy of the parameters."""
    tm = torch_model_for(model.config)
    keys = npformer_keys(tm)
    if set(keys) != set(model.params):
        raise ValueError(f"key mismatch: torch-only {sorted(set(keys) - set(model.params))}, "
                         f"npformer-only {sorted(set(model.params) - set(keys))}")
    with torch.no_grad():
        for key, (param, transposed) in keys.items():
            value = torch.from_numpy(np.ascontiguousarray(model.params[key]))
            param.copy_(value.T if transposed else value)
    return tm


def _to_npformer(tm, attribute):
    out = {}
    for key, (param, transposed) in npformer_keys(tm).items():
        t = getattr(param, attribute)
        if t is None:  # parameter never used by the loss: zero gradient
            t = torch.zeros_like(param)
        t = t.detach()
        out[key] = np.ascontiguousarray((t.T if transposed else t).cpu().numpy())
    return out


def grads_to_npformer(tm):
    """{npformer key: gradient ndarray in npformer's layout} after loss.backward()."""
    return _to_npformer(tm, "grad")


def params_to_npformer(tm):
    """{npformer key: parameter ndarray in npformer's layout} (copies)."""
    return _to_npformer(tm, "data")


def param_groups(tm, weight_decay):
    """Decay / no-decay parameter groups for torch.optim.AdamW, by npformer's rule.

    Uses `npformer.training.optim.default_no_decay(key, array)` on the npformer keys, so
    both frameworks decay exactly the same tensors.
    """
    from ..training.optim import default_no_decay  # imported here: optional sibling module

    decay, no_decay = [], []
    for key, (param, transposed) in npformer_keys(tm).items():
        view = param.detach().cpu().numpy()  # no copy on CPU
        view = view.T if transposed else view  # npformer's layout
        (no_decay if default_no_decay(key, view) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]
