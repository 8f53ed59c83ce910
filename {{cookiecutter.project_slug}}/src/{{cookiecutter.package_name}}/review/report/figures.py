"""The report's PNG figures (matplotlib, the `report` group, imported only when drawing)."""

from io import BytesIO

from ...util.groups import require
from .load import Side, splits

LOSS_PNG, DATA_PNG = "loss.png", "data.png"


def new_figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas, without pyplot's global state."""
    require("matplotlib", "drawing the figures (ft report, ft history)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig) -> bytes:
    buf = BytesIO()
    # No "Software" stamp: the same inputs give the same bytes on any matplotlib patch release.
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _who(side: Side, run: Side) -> str:
    """How a figure's legend names a side."""
    return (
        f"this run ({side.manifest['run_id']})"
        if side is run
        else f"baseline ({side.label.strip('`')})"
    )


def loss_figure(run: Side, base: Side | None) -> bytes:
    fig = new_figure(8, 4.5)
    ax = fig.add_subplot()
    for side, color, style in ((run, "C0", "-"), (base, "C1", "--")):
        if side is None:
            continue
        m, who = side.manifest["metrics"], _who(side, run)
        if side.curve:
            ax.plot(
                [r["step"] for r in side.curve],
                [r["loss"] for r in side.curve],
                style,
                color=color,
                marker="o",
                markersize=3,
                label=f"{who}: train loss",
            )
            last_step = side.curve[-1]["step"]
        elif "train_loss_first" in m:  # only the manifest's summary travelled with it
            first_step = side.manifest["config"]["train"]["log_every"]
            last_step = m.get("steps", first_step)
            ax.plot(
                [first_step, last_step],
                [m["train_loss_first"], m["train_loss_last"]],
                ":",
                color=color,
                marker="x",
                label=f"{who}: train loss, first/last only",
            )
        else:
            last_step = m.get("steps", 0)
        if m.get("eval_loss") is not None:
            ax.scatter(
                [last_step],
                [m["eval_loss"]],
                marker="*",
                s=160,
                color=color,
                zorder=3,
                edgecolors="black",
                linewidths=0.5,
                label=f"{who}: eval loss {m['eval_loss']:.4f}",
            )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean per token)")
    ax.set_title(
        f"Training loss of {run.manifest['run_id']}"
        + (f" vs baseline {base.label.strip('`')}" if base else "")
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig)


def data_figure(run: Side, base: Side | None) -> bytes:
    """Rows kept after each filter, per split; stages whose counts moved are shaded red."""
    names = [split for split, _ in splits(run.manifest)]
    fig = new_figure(10, 4.5)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    sides = [(run, "C0")] + ([(base, "C1")] if base else [])
    for ax, split in zip(axes, names, strict=True):
        stages: list[str] = []
        counts = []
        for side, _ in sides:
            info = side.manifest["data"]["splits"].get(split, {"rows_in": 0, "steps": []})
            kept = {"source": info["rows_in"]} | {s["filter"]: s["rows_out"] for s in info["steps"]}
            stages += [s for s in kept if s not in stages]
            counts.append(kept)
        height = 0.8 / len(sides)
        for i, ((side, color), kept) in enumerate(zip(sides, counts, strict=True)):
            ys = [p + (i - (len(sides) - 1) / 2) * height for p in range(len(stages))]
            bars = ax.barh(
                ys,
                [kept.get(s, 0) for s in stages],
                height=height,
                color=color,
                label=_who(side, run) if ax is axes[0] else None,
            )
            ax.bar_label(bars, fmt="%d", fontsize=7, padding=2)
        ax.set_yticks(range(len(stages)), stages, fontsize=8)
        if base:
            for tick, stage in zip(ax.get_yticklabels(), stages, strict=True):
                if counts[0].get(stage) != counts[1].get(stage):
                    position = stages.index(stage)
                    ax.axhspan(position - 0.45, position + 0.45, color="C3", alpha=0.08)
                    tick.set_color("C3")
                    tick.set_fontweight("bold")
        ax.invert_yaxis()  # pipeline order, top to bottom
        ax.set_xlabel("rows kept")
        ax.set_title(f"{split}: rows after each filter", fontsize=10)
        ax.margins(x=0.15)
        ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside upper center", ncols=len(sides), fontsize=8, frameon=False)
    return png_bytes(fig)
