"""python -m npformer.exercises [--check FILE] [NAME ...] is `npformer exercises ...` (exercises/cli.py)."""
import sys

from ..cli import main

sys.exit(main(["exercises", *sys.argv[1:]]))
