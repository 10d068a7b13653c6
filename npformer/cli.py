"""Command-line interface: a thin shell over importable functions.

Each sub-command parses its flags, calls one library function and prints the
result. Errors the user can fix (bad flags, unreadable files) print one line
and exit with status 2; no traceback.
"""
import argparse
import sys

from . import __version__


class UsageError(Exception):
    """A problem with the user's arguments or files: reported in one line, exit code 2."""


def cmd_gradcheck(args):
    """Run every gradient check and print the table; exit 1 if any check fails."""
    from .gradcheck import format_table, layer_checks, model_checks

    rows = layer_checks(args.seed)
    if not args.layers_only:
        rows += model_checks(args.seed)
    print(format_table(rows))
    return 0 if all(r.passed for r in rows) else 1


def build_parser():
    parser = argparse.ArgumentParser(
        prog="npformer",
        description="An educational encoder-decoder transformer in NumPy.",
    )
    parser.add_argument("--version", action="version", version=f"npformer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "gradcheck",
        help="check every hand-written backward pass against finite differences",
        description="Check every layer's backward pass, and the whole model's gradient, "
        "against float64 central differences. Prints a table; exits 1 on any failure.",
        epilog="example: npformer gradcheck --layers-only",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--layers-only", action="store_true",
                   help="skip the (slower) whole-model checks")
    p.set_defaults(func=cmd_gradcheck)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as err:
        print(f"npformer {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
