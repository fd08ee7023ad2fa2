"""``hwpart sim load|discovery``: put hls4ml projects on the simulated board, let PYNQ find it.

Imports only argparse at module level: the host CLI loads every plugin to
build its parser, and PYNQ (about 0.6 s) is needed only when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def register_cli(sub: Any) -> None:
    p = sub.add_parser("sim", help="the simulated PYNQ board: hls4ml projects, discovery by PYNQ")
    ssub = p.add_subparsers(dest="sim_command", required=True)

    ld = ssub.add_parser("load", help="simulated bitstream + .hwh of an hls4ml VivadoAccelerator "
                                      "project, for its own PYNQ driver")
    ld.add_argument("project", help="the hls4ml project folder (written and compiled)")
    ld.add_argument("-o", "--out", help="where to write hls4ml_nn.bit/.hwh "
                                        "(default PROJECT/hwpart_sim)")
    ld.add_argument("--board", help="hwpart board file to model (default: the project's board)")
    ld.set_defaults(func=cmd_load)

    d = ssub.add_parser("discovery", help="install the startup hook that lets PYNQ find the "
                                          "simulated board when HWPART_SIM_BOARD is set")
    g = d.add_mutually_exclusive_group()
    g.add_argument("--install", action="store_true", help="write the .pth into site-packages")
    g.add_argument("--remove", action="store_true", help="delete it")
    d.add_argument("--site-dir", help="site-packages folder (default: this environment's)")
    d.set_defaults(func=cmd_discovery)


def cmd_load(args: Any) -> int:
    from hwpart.sim.accel import describe, load_project

    print(describe(load_project(Path(args.project), args.out, args.board)))
    return 0


def cmd_discovery(args: Any) -> int:
    from hwpart.errors import HwpartError
    from hwpart.sim import autoload

    try:
        if args.install:
            p = autoload.install(args.site_dir)
            print(f"installed {p}: with {autoload.ENV}=BOARD set, PYNQ finds the simulated "
                  "board (without it, the hook does nothing)")
        elif args.remove:
            p = autoload.remove(args.site_dir)
            print(f"removed {p}" if p else "no discovery hook was installed there")
        else:
            p = autoload.installed(args.site_dir)
            print(f"installed: {p}" if p else
                  f"not installed in {args.site_dir or autoload.site_dir()} "
                  "(hwpart sim discovery --install)")
    except OSError as exc:
        raise HwpartError(f"discovery hook: {exc}") from exc
    return 0
