"""Training curves for reports: per-output training loss and headline validation metric of one or several jobs.

One panel per output, one colour per job; solid lines are the validation MSE, dashed lines the
training loss. matplotlib is imported inside :func:`plot_curves` (Agg backend, no display needed),
so the dashboard and the CLI start without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trainyard.db.records import EpochRecord, JobRecord
from trainyard.db.store import Store
from trainyard.display import headline_name
from trainyard.errors import TrainyardError
from trainyard.metrics import metric


@dataclass(frozen=True)
class JobCurves:
    """A job and its recorded epochs (in epoch order)."""

    job: JobRecord
    epochs: tuple[EpochRecord, ...]

    @property
    def output_names(self) -> list[str]:
        names: dict[str, None] = {}
        for record in self.epochs:
            names.update(dict.fromkeys(record.outputs))
        return list(names)

    def headline(self, output: str) -> str | None:
        """The headline validation metric ``output`` reports (``mse``, ``log_loss``...)."""
        for record in reversed(self.epochs):
            name = headline_name(record.val_metrics.get(output, {}))
            if name is not None:
                return name
        return None

    def curve(self, output: str, metric: str) -> tuple[list[int], list[float]]:
        """Epoch numbers and values of ``metric`` for ``output``: ``loss`` (training), ``val_mse``, or
        any validation metric it reports (``log_loss``, ``accuracy``...); gaps dropped."""
        xs: list[int] = []
        ys: list[float] = []
        for record in self.epochs:
            entry = record.outputs.get(output, {})
            value = (
                entry.get(metric) if metric in ("loss", "val_mse") else record.val_metrics.get(output, {}).get(metric)
            )
            if value is not None and math.isfinite(value):
                xs.append(record.epoch)
                ys.append(float(value))
        return xs, ys


def read_curves(store: Store, job_ids: Sequence[int]) -> list[JobCurves]:
    """The jobs and their epochs; raises :class:`~trainyard.errors.JobNotFound` for an unknown id."""
    jobs = store.get_jobs(job_ids)
    return [JobCurves(job, tuple(store.epochs(job.id))) for job in jobs]


def default_plot_path(job_ids: Sequence[int]) -> Path:
    """``trainyard-jobs-3-4.png`` in the current folder."""
    return Path(f"trainyard-jobs-{'-'.join(str(i) for i in job_ids)}.png")


def plot_curves(curves: Sequence[JobCurves], out: Path) -> Path:
    """Draw the curves into ``out`` (PNG, or any format matplotlib infers from the suffix)."""
    outputs = list(dict.fromkeys(name for c in curves for name in c.output_names))
    if not outputs:
        ids = ", ".join(f"#{c.job.id} ({c.job.state})" for c in curves)
        raise TrainyardError(f"nothing to plot: no epoch recorded yet for job {ids}")

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    columns = min(len(outputs), 2)
    rows = math.ceil(len(outputs) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.4 * columns, 4.2 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    try:
        for index, output in enumerate(outputs):
            ax = axes[index // columns][index % columns]
            shown = next((h for c in curves if (h := c.headline(output)) is not None), "mse")
            name = metric(shown).label
            for number, job_curves in enumerate(curves):
                colour = colours[number % len(colours)]
                label = f"#{job_curves.job.id} {job_curves.job.name}"
                xs, ys = job_curves.curve(output, shown)
                if xs:
                    ax.plot(xs, ys, color=colour, marker="o", markersize=3, label=f"{label} val {name}")
                xs, ys = job_curves.curve(output, "loss")
                if xs:
                    ax.plot(xs, ys, color=colour, linestyle="--", alpha=0.8, label=f"{label} train loss")
            values = [y for c in curves for kind in (shown, "loss") for y in c.curve(output, kind)[1]]
            if values and min(values) > 0 and max(values) / min(values) > 100:
                ax.set_yscale("log")  # early epochs would flatten the curve's interesting end
            ax.set_title(f"output {output!r}")
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"validation {name} / training loss")
            ax.grid(True, alpha=0.3)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.legend(fontsize="small")
        for index in range(len(outputs), rows * columns):
            axes[index // columns][index % columns].set_visible(False)
        title = ", ".join(f"#{c.job.id} {c.job.name}" for c in curves)
        fig.suptitle(f"trainyard: {title}")
        fig.tight_layout()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, dpi=110)
        except (OSError, ValueError) as exc:  # unwritable folder, unknown image format
            raise TrainyardError(f"cannot write the plot to {out}: {exc}") from exc
    finally:
        plt.close(fig)
    return out
