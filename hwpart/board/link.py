"""``hwpart board link remote://HOST:PORT --key KEYFILE --bundle BUNDLE``: measure the link.

Run on the host, against a running board agent: the round trip of an empty
request and the bandwidth of requests and replies carrying payloads
(:meth:`hwpart.board.client.AgentClient.measure_link`), as a batch sent to a
remote FPGA sees them. Writes the ``link`` section of ``BUNDLE/measured.json``
(:mod:`hwpart.board.measured`), which the planner needs before it prices a
remote FPGA. The figures are always measured (the network is real even when
the agent serves a simulated board); the source names both ends.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path
from typing import Any

from hwpart.board.client import AgentClient
from hwpart.board.measured import update_measured


def measure_and_record(client: AgentClient, bundle: Path | str | None,
                       rounds: int = 20) -> dict[str, Any]:
    """Measure the link; write it into ``bundle``'s measured.json when one is given."""
    fig = client.measure_link(rounds=rounds)
    if bundle is not None:
        what = "simulated board" if client.simulated else f"PYNQ {client.info.get('pynq')}"
        update_measured(bundle, "link", {"rtt_s": fig["rtt_s"],
                                         "bandwidth_Bps": fig["bandwidth_Bps"],
                                         "points": fig["points"]},
                        f"hwpart board link: {platform.node() or 'host'} -> agent "
                        f"{client.endpoint} ({what})", simulated=False)
    return fig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("agent", help="remote://HOST:PORT of a running `hwpart board serve`")
    p.add_argument("--key", required=True, help="the host's client.key_secret")
    p.add_argument("--server-key", help="the agent's public key (default: server.key beside "
                                        "--key)")
    p.add_argument("--bundle", help="write the figures into BUNDLE/measured.json")
    p.add_argument("--rounds", type=int, default=20, help="pings per figure (default 20)")


def run(args: argparse.Namespace) -> int:
    client = AgentClient(args.agent, args.key, args.server_key)
    try:
        client.hello()
        fig = measure_and_record(client, args.bundle, args.rounds)
    finally:
        client.close()
    print(f"link to {client.endpoint}: round trip {fig['rtt_s'] * 1e6:.0f} us, "
          f"{fig['bandwidth_Bps'] / 1e6:.0f} MB/s (measured)"
          + (f"; written to {Path(args.bundle) / 'measured.json'}" if args.bundle else ""))
    return 0
