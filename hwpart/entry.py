"""The ``hwpart`` console script.

``hwpart board ...`` runs on a PYNQ board, which has no torch, rich or pydantic,
so it is dispatched here, before the host CLI and its imports load.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["board"]:
        from hwpart.board.cli import main as board_main

        return board_main(argv[1:])
    from hwpart.cli import main as host_main

    return host_main(argv)


if __name__ == "__main__":
    sys.exit(main())
