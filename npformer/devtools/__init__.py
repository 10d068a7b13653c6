"""Developer tools that runtime code never imports (tests/test_layout.py).

torch_reference.py: the same models in PyTorch, the tests' oracle; tutorial_tools.py:
re-run the notebooks and check their stored outputs (`python -m
npformer.devtools.tutorial_tools check NN`); scan_commands.py: the SCAN command corpus of
benchmarks/user_corpus.py.
"""
