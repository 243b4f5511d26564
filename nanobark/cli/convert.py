"""`nanobark convert SRC OUT`: a Bark checkpoint folder into nanobark's layout (the converter: weights/convert/)."""

import os
import sys

from .parser import EXIT_CODES, Parser


def convert(argv, prog="nanobark convert"):
    """-> exit code: 0 done, 1 the conversion failed, 2 bad arguments."""
    p = Parser(
        prog=prog,
        epilog=EXIT_CODES,
        description="Convert a Bark checkpoint folder into nanobark's layout (what nanobark does by itself "
        "on first use of a Hub model; by hand for a snapshot you downloaded, or Suno's original .pt "
        "files).",
    )
    p.add_argument(
        "src", help="a Hub snapshot folder of suno/bark-small or suno/bark, or a folder with Suno's .pt files"
    )
    p.add_argument("out", help="output folder: a new or empty one, or an earlier conversion (replaced whole)")
    args = p.parse_args(argv)
    from ..weights.convert.folder import ConversionError, check_output
    from ..weights.convert.folder import convert as convert_folder

    if not os.path.isdir(args.src):
        p.error(f"{args.src} is not a folder; pass the folder holding config.json (or Suno's text.pt)")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        p.error(f"cannot write {args.out}: folder {os.path.dirname(os.path.abspath(args.out))} does not exist")
    try:
        check_output(args.out)
    except ConversionError as e:
        p.error(str(e))
    try:
        convert_folder(args.src, args.out)
    except (ConversionError, OSError) as e:  # OSError: a file refused by read_bounded, a full disk
        print(f"nanobark: error: {e}", file=sys.stderr)
        return 1
    print(f"converted {args.src} -> {args.out}")
    return 0
