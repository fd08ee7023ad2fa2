"""``hwpart board ...``: the commands that run on the board.

Dispatched by :mod:`hwpart.entry` before the host CLI (and torch) is imported.
Each subcommand lives in its own module, imported only when it is named, so a
board missing one module's dependency still runs the others. A module offers
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hwpart.errors import HwpartError

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("hwpart.board.agent", "serve the FPGA device's operations to a host (board agent)"),
    "check": ("hwpart.board.check", "measure DMA, PR swaps and the link; write them into the bundle"),
    "install": ("hwpart.board.install", "verify a deployed bundle's sha256 and preload its partials"),
    "keys": ("hwpart.board.keys", "make CURVE key pairs for the agent and the host"),
    "link": ("hwpart.board.link", "measure the host <-> agent link (run on the host); write it "
                                  "into the bundle"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hwpart board",
                                     description="board-side commands (run on the PYNQ board)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, text) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real missing dependency inside it: say so
                raise
            continue
        p = sub.add_parser(name, help=text, description=text)
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HwpartError as exc:
        print(f"hwpart board: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hwpart board: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
