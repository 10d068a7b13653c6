"""python -m npformer.exercises [--check FILE] [NAME ...]: see npformer/exercises/cli.py."""
import sys

from .cli import main

sys.exit(main())
