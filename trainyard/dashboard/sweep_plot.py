"""A sweep's picture: the objective per trial (with the best so far), and the objective per parameter.

One panel for the trials in the order they were asked for, one per parameter (log scale for a
``log_uniform`` one, the choices in order for a ``choice``). Succeeded trials are dots, pruned ones
crosses at the objective of the epoch they stopped at. matplotlib is imported when drawing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainyard.errors import TrainyardError


def default_sweep_plot_path(sweep_id: int) -> Path:
    """``trainyard-sweep-3.png`` in the current folder."""
    return Path(f"trainyard-sweep-{sweep_id}.png")


def plot_sweep(document: Mapping[str, Any], out: Path) -> Path:
    """Draw ``document`` (:func:`trainyard.scheduler.sweeps.sweep_document`) into ``out``."""
    trials = [t for t in document["trials"] if t["objective"] is not None and math.isfinite(t["objective"])]
    if not trials:
        raise TrainyardError(f"nothing to plot: no trial of sweep {document['id']} has an objective yet")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    parameters = list(document["parameters"].items())
    panels = 1 + len(parameters)
    columns = min(panels, 2)
    rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.4 * columns, 4.2 * rows), squeeze=False)
    objective = document["objective"]
    label = f"objective ({objective['metric']}, {objective['direction']}d)"
    values = [t["objective"] for t in trials]
    log_y = min(values) > 0 and max(values) / min(values) > 100
    styles = {"succeeded": ("o", "tab:blue"), "pruned": ("x", "tab:orange")}
    try:
        ax = axes[0][0]
        for state, (marker, colour) in styles.items():
            chosen = [t for t in trials if t["state"] == state]
            if chosen:
                ax.scatter(
                    [t["trial"] for t in chosen],
                    [t["objective"] for t in chosen],
                    marker=marker,
                    color=colour,
                    label=state,
                )
        other = [t for t in trials if t["state"] not in styles]
        if other:
            ax.scatter(
                [t["trial"] for t in other], [t["objective"] for t in other], marker=".", color="grey", label="other"
            )
        best_x, best_y, best = [], [], None
        maximize = objective["direction"] == "maximize"
        for t in sorted((t for t in trials if t["state"] == "succeeded"), key=lambda t: t["trial"]):
            if best is None or (t["objective"] > best if maximize else t["objective"] < best):
                best = t["objective"]
            best_x.append(t["trial"])
            best_y.append(best)
        if best_x:
            ax.step(best_x, best_y, where="post", color="tab:green", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(label)
        ax.set_title("objective per trial")
        for index, (path, parameter) in enumerate(parameters, start=1):
            ax = axes[index // columns][index % columns]
            choice = parameter["kind"] == "choice"
            order = [str(v) for v in parameter.get("choices", [])]
            for state, (marker, colour) in styles.items():
                chosen = [t for t in trials if t["state"] == state and path in t["params"]]
                xs = [order.index(str(t["params"][path])) if choice else t["params"][path] for t in chosen]
                if chosen:
                    ax.scatter(xs, [t["objective"] for t in chosen], marker=marker, color=colour, label=state)
            if choice:
                ax.set_xticks(range(len(order)), order)
            elif parameter.get("log"):
                ax.set_xscale("log")
            ax.set_xlabel(path)
            ax.set_ylabel(label)
            ax.set_title(f"objective per {path}")
        for index in range(panels):
            ax = axes[index // columns][index % columns]
            if log_y:
                ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small")
        for index in range(panels, rows * columns):
            axes[index // columns][index % columns].set_visible(False)
        fig.suptitle(f"trainyard sweep #{document['id']} {document['name']} ({document['method']})")
        fig.tight_layout()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, dpi=110)
        except (OSError, ValueError) as exc:
            raise TrainyardError(f"cannot write the plot to {out}: {exc}") from exc
    finally:
        plt.close(fig)
    return out
