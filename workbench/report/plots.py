"""The report's figures as inline SVG strings, drawn from the report dict (`build_report`), one function per plot.

Each function returns an `<svg>` element ready to paste into HTML, or None when its section has no data. Figures
use matplotlib's object API (`Figure`, no pyplot, no global figure manager), so the web app can render them from
several threads. Output is deterministic: the style is reset to matplotlib's defaults plus ours while a figure is
built and saved, SVG ids come from a fixed salt and are prefixed with the plot's name (several plots share one HTML
document), and no date is written. Text stays text (`svg.fonttype: none`), which keeps a figure to a few kB, and
the namespace declarations are dropped (inline SVG in HTML needs none), so a figure references no URL.

Text from data (variant, group names) is drawn literally: a `$` never starts mathtext.
"""

from __future__ import annotations

import io
import math
import re
import threading
from contextlib import contextmanager

import matplotlib
import matplotlib.style
from matplotlib.figure import Figure

from workbench.variants import is_tuned, uses_retrieval

WIDTH, HEIGHT = 6.0, 3.0
"""Figure size in inches."""

_STYLE = {
    "svg.hashsalt": "workbench-report",
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 7,
    "legend.frameon": False,
}
_LOCK = threading.RLock()
"""Styles live in matplotlib's global rcParams, so figures are built one at a time."""

_PALETTE = matplotlib.colormaps["tab10"].colors
_EVENT_COLOURS = {"spike": "tab:red", "overfit": "tab:orange", "early_stop": "tab:purple", "stop": "tab:purple"}


# -- plots ------------------------------------------------------------------------------------------------------------


def quality_plot(report: dict) -> str | None:
    """Per variant the decision metric's mean with its interval, and knowledge and abstention where measured."""
    quality = report.get("quality")
    if not quality or not quality.get("variants"):
        return None
    metric, variants = quality["metric"], list(quality["variants"])
    measures = [
        (metric, metric),
        ("knowledge", f"knowledge ({quality.get('knowledge_judge') or metric}, answerable)"),
        ("abstention", f"abstention ({metric}, unanswerable)"),
    ]
    measures = [
        (key, label)
        for key, label in measures
        if any((quality["variants"][v].get(key) or {}).get("mean") is not None for v in variants)
    ]
    if not measures:
        return None
    with _style():
        fig, ax = _figure()
        width = 0.8 / len(measures)
        for k, (key, label) in enumerate(measures):
            xs, rows = [], []
            for x, v in enumerate(variants):
                row = quality["variants"][v].get(key) or {}
                if row.get("mean") is not None:
                    xs.append(x + (k - (len(measures) - 1) / 2) * width)
                    rows.append(row)
            ax.errorbar(
                xs,
                [r["mean"] for r in rows],
                yerr=_whiskers(rows, "mean"),
                fmt="os^"[k % 3],
                capsize=3,
                color=_PALETTE[k],
                label=_text(label),
            )
        ax.set_xticks(range(len(variants)), [_text(v) for v in variants])
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("variant")
        ax.set_ylabel("mean score (0 to 1)")
        ax.set_title(_text(f"Quality per variant: mean {metric} with its interval"))
        fig.legend(loc="outside lower center", ncols=len(measures))
        return _svg(fig, "quality")


def comparisons_plot(report: dict) -> str | None:
    """Each paired comparison of the quality section on the decision metric: the mean difference a - b with its
    interval, significant ones (after correction) filled, and a zero line."""
    quality = report.get("quality")
    if not quality:
        return None
    metric = quality["metric"]
    rows = [
        (c, c["judges"][metric])
        for c in quality.get("comparisons") or []
        if (c.get("judges") or {}).get(metric, {}).get("mean") is not None
    ]
    if not rows:
        return None
    with _style():
        fig, ax = _figure()
        rows = rows[::-1]  # the first comparison on top
        for y, (c, d) in enumerate(rows):
            significant = bool(d.get("significant"))
            ax.errorbar(
                [d["mean"]],
                [y],
                xerr=_whiskers([d], "mean"),
                fmt="o",
                capsize=3,
                color="tab:green" if significant else "tab:gray",
                markerfacecolor="tab:green" if significant else "white",
            )
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(rows)), [_text(f"{c['a']} - {c['b']}") for c, _ in rows])
        ax.set_xlabel(_text(f"difference in mean {metric} (a - b)"))
        ax.set_title(_text(f"Paired differences in {metric} (filled: significant, corrected)"))
        ax.grid(axis="y", visible=False)
        return _svg(fig, "comparisons")


def win_rate_plot(report: dict) -> str | None:
    """The arena's win-rate matrix: the share of the row variant's battles against the column variant it won
    (draws count half), each cell annotated with the share and the number of battles."""
    win_rates = (report.get("preference") or {}).get("win_rates")
    if not win_rates or not win_rates.get("rate"):
        return None
    rate, battles = win_rates["rate"], win_rates.get("battles") or {}
    variants = list(rate)
    values = [[rate[i].get(j) for j in variants] for i in variants]
    with _style():
        fig, ax = _figure(height=max(HEIGHT, 0.5 * len(variants) + 1))
        image = ax.imshow(
            [[math.nan if v is None else v for v in row] for row in values],
            cmap="RdBu",
            vmin=0,
            vmax=1,
            aspect="auto",
        )
        for r, i in enumerate(variants):
            for c, j in enumerate(variants):
                share = values[r][c]
                n = (battles.get(i) or {}).get(j) or 0
                label = "-" if share is None else f"{share:.0%}\n({n})"
                dark = share is not None and abs(share - 0.5) > 0.3
                ax.text(c, r, label, ha="center", va="center", fontsize=7, color="white" if dark else "black")
        names = [_text(v) for v in variants]
        ax.set_xticks(range(len(variants)), names, rotation=20, ha="right")
        ax.set_yticks(range(len(variants)), names)
        ax.grid(False)
        ax.set_xlabel("against (column)")
        ax.set_ylabel("variant (row)")
        ax.set_title("Arena win rate of row against column (battles in brackets)")
        fig.colorbar(image, ax=ax, label="share of battles won")
        return _svg(fig, "win-rates")


def bradley_terry_plot(report: dict) -> str | None:
    """Bradley-Terry ratings (Elo scale) with their bootstrap intervals, plain and length-controlled side by side,
    best first."""
    preference = report.get("preference") or {}
    panels = [
        (title, (preference.get(key) or {}).get("variants") or {})
        for key, title in (("bradley_terry", "Bradley-Terry"), ("length_controlled", "length-controlled"))
    ]
    panels = [(title, ratings) for title, ratings in panels if ratings]
    if not panels:
        return None
    order = list(panels[0][1])[::-1]  # best on top
    colours = _colours(report)
    with _style():
        fig = Figure(figsize=(WIDTH, max(HEIGHT, 0.35 * len(order) + 1.2)), layout="constrained")
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for ax, (title, ratings) in zip(axes, panels):
            for y, v in enumerate(order):
                row = ratings.get(v)
                if row is None or row.get("rating") is None:
                    continue
                ax.errorbar(
                    [row["rating"]],
                    [y],
                    xerr=_whiskers([row], "rating"),
                    fmt="o",
                    capsize=3,
                    color=colours.get(v, "tab:blue"),
                )
            ax.axvline(1000, color="black", linewidth=0.8)
            ax.set_title(title)
            ax.set_xlabel("rating (Elo scale, 1000 = average)")
            ax.grid(axis="y", visible=False)
        axes[0].set_yticks(range(len(order)), [_text(v) for v in order])
        fig.suptitle(f"Arena ratings with intervals ({preference.get('votes', 0)} votes)", fontsize=9)
        return _svg(fig, "bradley-terry")


def latency_plot(report: dict) -> str | None:
    """Per variant the median time to a whole answer (bar) and its 95th percentile (marker)."""
    answers = (report.get("cost") or {}).get("answers") or {}
    rows = [(v, row["latency_s"]) for v, row in answers.items() if (row.get("latency_s") or {}).get("p50") is not None]
    if not rows:
        return None
    colours = _colours(report)
    with _style():
        fig, ax = _figure()
        xs = range(len(rows))
        ax.bar(xs, [r["p50"] for _, r in rows], color=[colours.get(v, "tab:blue") for v, _ in rows], label="median")
        p95 = [(x, r["p95"]) for x, (_, r) in zip(xs, rows) if r.get("p95") is not None]
        if p95:
            ax.plot([x for x, _ in p95], [y for _, y in p95], "v", color="black", label="95th percentile")
        ax.set_xticks(xs, [_text(v) for v, _ in rows])
        ax.set_xlabel("variant")
        ax.set_ylabel("seconds per answer")
        ax.set_title("Latency per answer in the eval")
        ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
        return _svg(fig, "latency")


def cost_volume_plot(report: dict) -> str | None:
    """Cumulative cost of each variant against the number of answers: the one-off cost (training the adapter for
    ft and ft_rag, building the index for rag and ft_rag) is the intercept and the cost per answer the slope, in
    money when every line is priced, else in machine time. The break-even volume of the cost section is marked."""
    cost = report.get("cost") or {}
    lines = cost_lines(cost)
    if not lines:
        return None
    unit = lines[0]["unit"]
    volumes = [b["answers"] for b in cost.get("break_even") or [] if b.get("answers")]
    reach = _round_up(max(3 * max(volumes), 10.0) if volumes else 1000.0)
    if unit == "seconds":
        top = max(line["one_off"] + line["per_answer"] * reach for line in lines)
        unit, scale = ("hours", 3600) if top > 7200 else ("minutes", 60) if top > 120 else ("seconds", 1)
        ylabel = f"machine time ({unit})"
    else:
        scale, ylabel = 1, f"cost ({unit})"
    colours = _colours(report)
    with _style():
        fig, ax = _figure()
        for line in lines:
            ax.plot(
                [0, reach],
                [line["one_off"] / scale, (line["one_off"] + line["per_answer"] * reach) / scale],
                color=colours.get(line["variant"], "tab:blue"),
                label=_text(line["variant"]),
            )
        by_variant = {line["variant"]: line for line in lines}
        for b in cost.get("break_even") or []:
            line = by_variant.get(b["variant"])
            if b.get("answers") is None or line is None:
                continue
            x = b["answers"]
            y = (line["one_off"] + line["per_answer"] * x) / scale
            ax.plot([x], [y], "o", color="black", markerfacecolor="none", markersize=8)
            ax.annotate(
                _text(f"{b['variant']} repays its one-off cost against {b['against']} after {x:,.0f} answers"),
                (x, y),
                xytext=(10, -4),
                textcoords="offset points",
                fontsize=7,
            )
        ax.set_xlim(0, reach)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("answers served")
        ax.set_ylabel(ylabel)
        ax.set_title("Cumulative cost against volume (one-off cost at 0 answers)")
        ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
        return _svg(fig, "cost-volume")


def training_plot(report: dict, adapter: str) -> str | None:
    """One adapter's training: train loss per step, validation loss at each evaluation, the best step, and the
    monitor's events (spikes, overfitting, early stop) as vertical lines."""
    training = (report.get("training") or {}).get(adapter) or {}
    curve = training.get("curve") or []
    train = [
        (r["step"], r["train_loss"]) for r in curve if r.get("step") is not None and r.get("train_loss") is not None
    ]
    val = [(r["step"], r["val_loss"]) for r in curve if r.get("step") is not None and r.get("val_loss") is not None]
    if not train and not val:
        return None
    with _style():
        fig, ax = _figure()
        if train:
            ax.plot(*zip(*train), color="tab:blue", linewidth=0.9, label="train loss")
        if val:
            ax.plot(*zip(*val), "o-", color="tab:orange", label="validation loss")
        best = training.get("best_step")
        if best is not None and training.get("best_val_loss") is not None:
            ax.plot([best], [training["best_val_loss"]], "*", color="black", markersize=10, label="best checkpoint")
        seen = set()
        for event in training.get("events") or []:
            if event.get("step") is None:
                continue
            kind = str(event.get("kind") or "event")
            ax.axvline(
                event["step"],
                color=_EVENT_COLOURS.get(kind, "tab:gray"),
                linestyle="--",
                linewidth=0.9,
                label=None if kind in seen else _text(kind),
            )
            seen.add(kind)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (cross-entropy per token)")
        ax.set_title(_text(f"Training of {adapter} ({training.get('outcome') or 'outcome unknown'})"))
        ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
        return _svg(fig, f"training-{adapter}")


# -- data the plots and the tables share ------------------------------------------------------------------------------


def cost_lines(cost: dict) -> list[dict]:
    """Per variant `{variant, one_off, per_answer, unit}`: the cumulative cost line of `cost_volume_plot`.

    Money (unit: the currency) when every variant's answers and one-off costs are priced; otherwise machine
    seconds, where remote variants (no machine time) are left out."""
    answers, training, index = cost.get("answers") or {}, cost.get("training") or {}, cost.get("index") or {}

    def one_off(variant: str, field: str, index_field: str) -> float | None:
        total = 0.0
        if is_tuned(variant):
            adapter = training.get(variant) or {}
            if adapter.get(field) is None:
                return None
            total += adapter[field]
        if uses_retrieval(variant):
            if index.get(index_field) is None:
                return None
            total += index[index_field]
        return total

    money = [
        {"variant": v, "one_off": one_off(v, "cost", "cost"), "per_answer": row["per_1000_answers"] / 1000}
        for v, row in answers.items()
        if row.get("per_1000_answers") is not None
    ]
    if money and len(money) == len(answers) and all(line["one_off"] is not None for line in money):
        return [line | {"unit": cost.get("currency") or "money"} for line in money]
    time = [
        {"variant": v, "one_off": one_off(v, "wall_seconds", "seconds"), "per_answer": row["machine_seconds"]}
        for v, row in answers.items()
        if row.get("machine_seconds") is not None
    ]
    return [line | {"one_off": line["one_off"] or 0.0, "unit": "seconds"} for line in time]


# -- helpers ----------------------------------------------------------------------------------------------------------


@contextmanager
def _style():
    """matplotlib's defaults plus `_STYLE` while a figure is built and saved, one figure at a time."""
    with _LOCK, matplotlib.style.context(["default", _STYLE]):
        yield


def _figure(height: float = HEIGHT):
    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    return fig, fig.add_subplot()


def _svg(fig: Figure, name: str) -> str:
    """The figure as an `<svg>` element: no XML prolog, no namespace declarations, ids prefixed with `name`."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"\n\s+", "\n", svg)  # indentation: a third of the size
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg, count=2)
    ids = sorted(set(re.findall(r'\bid="([^"]+)"', svg)), key=len, reverse=True)
    prefix = "wb-" + re.sub(r"[^A-Za-z0-9_-]", "_", name)
    if ids:
        pattern = re.compile(r'(\bid="|#)(' + "|".join(map(re.escape, ids)) + r')(?=["\)])')
        svg = pattern.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)
    svg = svg.replace("<svg ", f'<svg class="plot" id="{prefix}" ', 1)
    return svg.strip() + "\n"


def _text(value) -> str:
    """Literal text for matplotlib: `$` would start mathtext (and an unbalanced one fails the whole figure)."""
    return str(value).replace("$", r"\$")


def _whiskers(rows: list[dict], key: str) -> list[list[float]]:
    """errorbar's [[below], [above]] distances from `low`/`high`; 0 where an interval is missing."""
    below = [0.0 if r.get("low") is None else max(r[key] - r["low"], 0.0) for r in rows]
    above = [0.0 if r.get("high") is None else max(r["high"] - r[key], 0.0) for r in rows]
    return [below, above]


def _colours(report: dict) -> dict[str, tuple]:
    """One colour per variant, the same in every plot: the eval's order first, then any other variant by name."""
    seen = list(((report.get("eval") or {}).get("variants")) or [])
    others = set((report.get("preference") or {}).get("variants") or []) | set(
        (report.get("cost") or {}).get("answers") or {}
    )
    seen += sorted(others - set(seen))
    return {v: _PALETTE[k % len(_PALETTE)] for k, v in enumerate(seen)}


def _round_up(x: float) -> float:
    """1, 2 or 5 times a power of ten, at least `x`."""
    power = 10 ** math.floor(math.log10(x))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= x)
