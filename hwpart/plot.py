"""Draw a plan: the layer graph laid out by depth, each layer coloured by its device."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402

from hwpart.graph import LayerGraph  # noqa: E402
from hwpart.partition import Plan, unit_kind  # noqa: E402

COLORS = {"cpu": "#4c72b0", "gpu": "#55a868", "fpga": "#c44e52"}


def plot_plan(lg: LayerGraph, plan: Plan, path: str | Path) -> None:
    dag = lg.dag
    for depth, layer in enumerate(nx.topological_generations(dag)):
        for n in layer:
            dag.nodes[n]["_depth"] = depth
    pos = nx.multipartite_layout(dag, subset_key="_depth", align="horizontal", scale=-1)
    units = {n: (plan.assignment[n].unit if n in plan.assignment else "cpu") for n in dag}
    colors = [COLORS.get(unit_kind(units[n]), "#999999") for n in dag]
    width = max(6.0, 1.6 * max(len(g) for g in nx.topological_generations(dag)))
    fig, ax = plt.subplots(figsize=(width, max(4.0, 0.7 * len(dag))))
    nx.draw_networkx_edges(dag, pos, ax=ax, arrows=True, edge_color="#888888")
    nx.draw_networkx_nodes(dag, pos, ax=ax, node_color=colors, node_size=900)
    labels = {n: f"{n}\n{dag.nodes[n]['op']}\n{units[n]}" for n in dag}
    nx.draw_networkx_labels(dag, pos, labels=labels, ax=ax, font_size=7)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=d)
               for d, c in COLORS.items()]
    ax.legend(handles=handles, loc="upper right")
    pred = plan.predicted
    ax.set_title(f"{lg.name}: {plan.objective}, predicted {pred['throughput_sps']:,.0f}/s, "
                 f"latency {pred['latency_s'] * 1e6:,.0f} µs (FPGA modeled)", fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    for n in dag:
        dag.nodes[n].pop("_depth", None)
