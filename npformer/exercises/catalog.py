"""The exercises, in the order of the course: the registry `EXERCISES` {name: Exercise}.

Each exercise lives with its cases, reference and hints in a catalog_*.py file:
layers (linear, activations, softmax, layer norm), embedding (and the losses),
attention, model parts (dropout, feed-forward, pooling, tied output, fused
output loss, LoRA, positions), blocks (encoder and decoder, composed on the tape),
training (AdamW, gradient clipping), the recurrent layer (backprop through
time) and the LLM half (the LM loss with its shift,
top-k/top-p filtering, one KV-cache step, one BPE merge, a power-law fit, an
in-context-learning score). `npformer exercises` lists them in this order.
"""
from .catalog_training import ADAMW, CLIP
from .catalog_attention import ATTENTION, KV_STEP, MHA
from .catalog_block import BLOCK, DECODER_BLOCK
from .catalog_embedding import CROSS_ENTROPY, EMBEDDING
from .catalog_layers import GELU, LAYERNORM, LINEAR, RELU, SOFTMAX
from .catalog_llm import BPE_MERGE, FILTER, ICL_SCORE, LM_LOSS, POWER_LAW
from .catalog_model import DROPOUT, FFN, POOLING, SINUSOIDAL
from .catalog_output import LORA, OUTPUT_LOSS, TIED
from .catalog_recurrent import RNN

EXERCISES = {ex.name: ex for ex in (
    LINEAR, RELU, GELU, SOFTMAX, LAYERNORM, EMBEDDING, SINUSOIDAL, DROPOUT, FFN,  # layers
    ATTENTION, MHA, CROSS_ENTROPY, TIED, OUTPUT_LOSS, POOLING,  # attention, the output end
    BLOCK, DECODER_BLOCK, ADAMW, CLIP,  # blocks on the tape, training
    RNN,  # the recurrent layer: backprop through time
    LM_LOSS, BPE_MERGE, FILTER, KV_STEP, LORA, POWER_LAW, ICL_SCORE)}  # the LLM half
