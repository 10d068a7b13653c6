"""The math: the tape, masks, parameter specs, blocks, layers and kernels.

Imports nothing else from npformer (tests/test_layout.py). Reading order: tape.py,
masks.py, layers/ (each op a forward/backward pair; kernels/ holds their hot loops),
params.py (every weight's name, shape and initialisation), blocks.py (the encoder and
decoder layers, recorded op by op). config.py holds ModelConfig, the sizes of a network.
"""
