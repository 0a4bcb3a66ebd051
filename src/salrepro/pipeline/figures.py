"""Figures of the replication (seaborn), one function per figure.

Each takes the data frames written by `stages.py` and returns a matplotlib
Figure; `save(fig, path)` writes a PNG. The notebooks only call these.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files (the notebooks still display them)
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ..data import DISPLAY_NAMES  # noqa: E402
from ..method.models import method_of  # noqa: E402
from .paper import METRIC_NAMES  # noqa: E402


def _sns():
    import seaborn as sns  # a dev extra: only the notebooks draw

    sns.set_theme(style="whitegrid", context="notebook")
    return sns


def save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    return path


def _order(labels) -> list[str]:
    def key(lab):
        name, _, k = lab.partition("-")
        return (name != "BP", name, int(k) if k.isdigit() else 0)

    return sorted(set(labels), key=key)


def learning_curves(curves: pd.DataFrame, title: str, metric="val_accuracy_pct"):
    """Per-epoch curves, mean and spread over seeds, one line per method-K."""
    sns = _sns()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    order = _order(curves["label"])
    sns.lineplot(curves, x="epoch", y=metric, hue="label", hue_order=order, errorbar="sd", ax=axes[0])
    sns.lineplot(curves, x="epoch", y="train_loss", hue="label", hue_order=order, errorbar="sd", ax=axes[1], legend=False)
    axes[0].set(ylabel="validation accuracy (%)", title=f"{title}: validation accuracy")
    axes[1].set(ylabel="training loss", title=f"{title}: training loss")
    fig.tight_layout()
    return fig


def ours_vs_paper(comparison: pd.DataFrame, title: str, metric="val_accuracy_pct"):
    """Ours and the paper's mean +- std per method-K, side by side as points with error bars on an
    axis zoomed to the data (a gap of a few points must be visible), and below it the difference
    ours - paper with its +- 2 combined-std band (where the report calls a cell "within")."""
    _sns()
    c = comparison[comparison["metric"] == metric].dropna(subset=["paper_mean"])
    c = c.set_index("label").reindex([lab for lab in _order(c["label"])]).reset_index()
    xs = range(len(c))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    top.errorbar([x - 0.1 for x in xs], c["ours_mean"], yerr=c["ours_std"].fillna(0), fmt="o", capsize=4, label="ours")
    top.errorbar([x + 0.1 for x in xs], c["paper_mean"], yerr=c["paper_std"].fillna(0), fmt="s", capsize=4,
                 color="black", label="paper")
    ylabel = {"val_accuracy_pct": "validation accuracy (%)"}.get(metric, metric)
    top.set(ylabel=ylabel, title=f"{title}: ours vs paper (mean +- std over seeds; axis zoomed, not from 0)")
    top.legend()
    diff = c["ours_mean"] - c["paper_mean"]
    band = 2 * c["combined_std"] if "combined_std" in c else None
    if band is not None:
        bottom.bar(list(xs), 2 * band, bottom=-band, width=0.5, color="tab:green", alpha=0.15, label="+- 2 combined std")
    bottom.errorbar(list(xs), diff, yerr=c["ours_std"].fillna(0), fmt="o", capsize=4)
    bottom.axhline(0, color="black", lw=0.8)
    bottom.set(ylabel="ours - paper", xticks=list(xs), xticklabels=c["label"])
    if band is not None:
        bottom.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def occupancy(occ: pd.DataFrame, title: str):
    """How evenly the first routed layer uses its areas: each run's areas
    ranked by their share of validation samples, the share averaged over
    seeds per rank (area indices are arbitrary, ranks are comparable)."""
    sns = _sns()
    if occ.empty:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "no routed layers", ha="center", va="center")
        ax.axis("off")
        return fig
    o = occ[occ["layer"] == occ["layer"].min()].copy()
    run = ["method", "areas", "depth", "hidden", "seed"]
    o["share"] = o["samples"] / o.groupby(run)["samples"].transform("sum")
    o["rank"] = o.groupby(run)["share"].rank(ascending=False, method="first").astype(int)
    o = o.groupby(["areas", "rank"])["share"].mean().reset_index()
    o["K"] = "K=" + o["areas"].astype(str)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    sns.barplot(o, x="rank", y="share", hue="K", ax=ax)
    ax.set(title=f"{title}: area occupancy, areas ranked by use (first routed layer, mean over seeds)",
           xlabel="area rank (1 = most used)", ylabel="share of validation samples")
    fig.tight_layout()
    return fig


def versus_axis(summary: pd.DataFrame, axis: str, title: str, paper_trend: str | None = None, note: str | None = None):
    """Final validation accuracy against depth or width, bp vs sal (mean +- std, each point labelled with
    its number of seeds where they differ along a line); `paper_trend`, the paper's own reading of its
    figure (paper.TRENDS), and `note` (e.g. what the widest runs cost) are printed under the axes."""
    sns = _sns()
    s = summary.copy()
    x = "depth" if axis == "depth" else "hidden"
    fig, ax = plt.subplots(figsize=(7, 4))
    for lab, g in s.groupby("label", sort=False):
        g = g.sort_values(x)
        ax.errorbar(g[x], g["val_accuracy_pct_mean"], yerr=g["val_accuracy_pct_std"].fillna(0), marker="o", capsize=3, label=lab)
        if "seeds" in g and g["seeds"].nunique() > 1:  # say where a point rests on fewer runs
            for xv, yv, n in zip(g[x], g["val_accuracy_pct_mean"], g["seeds"]):
                ax.annotate(f"n={n}", (xv, yv), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set(xlabel=axis, ylabel="final validation accuracy (%)", title=title)
    ax.legend()
    sns.despine(fig)
    text = "\n".join(t for t in (paper_trend, note) if t)
    if text:
        fig.text(0.01, -0.02, text, ha="left", va="top", fontsize=9, style="italic", wrap=True)
    fig.tight_layout()
    return fig


def sal_vs_moe(curves: pd.DataFrame, title: str):
    """Figures 4-5: per-epoch validation accuracy, SAL vs MoE (and SAL-BP when run), one panel per K."""
    sns = _sns()
    c = curves.copy()
    c["K"] = c["areas"]
    c["method"] = c["method"].map(lambda m: method_of(m).title)
    g = sns.relplot(c, x="epoch", y="val_accuracy_pct", hue="method", col="K", kind="line", errorbar="sd",
                    height=3, aspect=1.0, facet_kws={"sharey": True})
    g.set_axis_labels("epoch", "validation accuracy (%)")
    others = " and SAL-BP (SAL's areas, trained by BP)" if "salbp" in set(curves["method"]) else ""
    g.figure.suptitle(f"{title}: SAL vs top-1 MoE (BP){others}", y=1.04)
    return g.figure


def protocol_distances(table: pd.DataFrame):
    """Protocol study at a glance: one row per reading (named by its choices), ordered by its mean |z| over
    the fit datasets (closest to the paper on top); one marker per dataset on one shared axis, filled on
    the fit set, hollow on the held-out set; a reading's claims (SAL above BP, accuracy rising with K) on
    a dataset are the marker's shape: star both, triangle one, circle neither. The legend sits in its own
    band under the axis label (constrained layout), so it never covers the ticks, whatever the rows."""
    sns = _sns()
    fit_set = table.get("set", pd.Series("fit", index=table.index)) == "fit"
    order = table[fit_set].groupby("reading")["mean_abs_z"].mean().sort_values().index.tolist()
    order += [r for r in dict.fromkeys(table["reading"]) if r not in order]
    names = {r: (f"{r}: {c}" if c and c != r else r) for r, c in zip(table["reading"], table.get("choices", table["reading"]))}
    datasets = list(dict.fromkeys(table["dataset"]))
    colors = dict(zip(datasets, sns.color_palette("colorblind", len(datasets))))
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(order) + 2.2), layout="constrained")
    ys = {r: i for i, r in enumerate(order)}
    for r in table.itertuples():
        claims = bool(r.sal_above_bp) + bool(r.rises_with_k)
        held = getattr(r, "set", "fit") != "fit"
        ax.scatter(r.mean_abs_z, ys[r.reading], s=70, marker={2: "*", 1: "^", 0: "o"}[claims], zorder=3,
                   facecolors="none" if held else colors[r.dataset], edgecolors=colors[r.dataset], linewidths=1.5)
    ax.set_yticks(range(len(order)), [names[r] for r in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("mean |z| over the Tables 2/3 cells (log scale; lower = closer to the paper)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=colors[d], label=DISPLAY_NAMES.get(d, d)) for d in datasets]
    handles += [Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color="gray", label="hollow: held out (run once)"),
                Line2D([], [], marker="*", linestyle="", color="gray", markersize=10, label="star: SAL above BP and rising with K"),
                Line2D([], [], marker="^", linestyle="", color="gray", label="triangle: one of the two claims")]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    ax.set_title("Protocol study: how close each reading comes to the paper (ordered on the fit set)")
    sns.despine(fig)
    return fig


def loss_accuracy(runs: pd.DataFrame, consistency: pd.DataFrame):
    """Validation loss against validation accuracy: every run of every reading (SAL grey, BP blue),
    one panel per dataset, with the paper's SAL (red) and BP (black) points labelled by K."""
    _sns()
    datasets = list(dict.fromkeys(runs["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.6), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        r = runs[runs["dataset"] == ds]
        for method, color, size in (("sal", "0.6", 6), ("bp", "tab:blue", 10)):
            m = r[r["method"] == method]
            ax.scatter(m["val_accuracy_pct"], m["val_loss"], s=size, color=color, alpha=0.5,
                       label=f"ours, {method.upper()} (every run, every reading)")
        p = consistency[consistency["dataset"] == ds]
        for method, color in (("sal", "tab:red"), ("bp", "black")):
            q = p[p["method"] == method]
            ax.scatter(q["paper_accuracy_pct"], q["paper_val_loss"], s=60, marker="*", color=color, zorder=3,
                       label=f"paper, {method.upper()}")
            for row in q.itertuples():
                ax.annotate(f"{method.upper()}-{row.areas}" if method == "sal" else "BP",
                            (row.paper_accuracy_pct, row.paper_val_loss), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(title=DISPLAY_NAMES.get(ds, ds), xlabel="validation accuracy %", ylabel="validation loss")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Loss against accuracy: where the paper's points lie among ours")
    fig.tight_layout()
    return fig


def paper_vs_ours(comparison: pd.DataFrame, preset: pd.DataFrame | None = None, preset_name: str = "preset"):
    """Every Table 2/3 cell we ran: the paper's value (x) against ours (y), with both error bars and
    the diagonal; colour by dataset, marker by method. BP on the diagonal is the calibration; SAL off
    it is the finding. Left accuracy, right validation loss."""
    _sns()
    parts = [comparison.assign(who=comparison["method"].map({"bp": "BP", "sal": "SAL (defaults)"}))]
    if preset is not None and len(preset):
        parts.append(preset[preset["method"] == "sal"].assign(who=f"SAL ({preset_name})"))
    t = pd.concat(parts, ignore_index=True)
    t = t[t["paper_mean"].notna() & t["ours_mean"].notna() & t["who"].notna()]
    markers = {"BP": "o", "SAL (defaults)": "^", f"SAL ({preset_name})": "s"}
    datasets = list(dict.fromkeys(t["dataset"]))
    colors = dict(zip(datasets, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6))
    for ax, metric, name in zip(axes, ("val_accuracy_pct", "val_loss"), ("validation accuracy %", "validation loss")):
        m = t[t["metric"] == metric]
        for (ds, who), g in m.groupby(["dataset", "who"], sort=False):
            ax.errorbar(g["paper_mean"], g["ours_mean"], xerr=g["paper_std"], yerr=g["ours_std"].fillna(0),
                        fmt=markers[who], color=colors[ds], ms=6, alpha=0.8, elinewidth=0.8, capsize=2, ls="none")
        if len(m):
            lo, hi = float(min(m["paper_mean"].min(), m["ours_mean"].min())), float(max(m["paper_mean"].max(), m["ours_mean"].max()))
            pad = 0.05 * (hi - lo or 1)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.5", lw=1, ls="--")
        ax.set(xlabel=f"paper: {name}", ylabel=f"ours: {name}", title=name)
    handles = [plt.Line2D([], [], color=colors[d], marker="o", ls="none", label=str(t.loc[t["dataset"] == d, "display"].iloc[0]))
               for d in datasets]
    handles += [plt.Line2D([], [], color="0.3", marker=mk, ls="none", label=who) for who, mk in markers.items()
                if who in set(t["who"])]
    axes[1].legend(handles=handles, fontsize=8, loc="best")
    fig.suptitle("Every Table 2/3 cell we ran: the paper (x) against ours (y); on the dashed line they agree")
    fig.tight_layout()
    return fig


class Shown:
    """A saved figure as a notebook shows it: the PNG, and an HTML <img> carrying its description as alt
    text (nbconvert's HTML takes the <img>; it drops an image/png output's alt text and warns)."""

    def __init__(self, path: Path, alt: str):
        self.path, self.alt = Path(path), alt

    def _repr_mimebundle_(self, include=None, exclude=None):
        import base64
        import html

        data = base64.b64encode(self.path.read_bytes()).decode("ascii")
        return {"image/png": data, "text/plain": self.alt,
                "text/html": f'<img alt="{html.escape(self.alt, quote=True)}" src="data:image/png;base64,{data}"/>'}


def absent(reason: str):
    """What a figure cell shows when it has no figure to draw here, saying why (a figure cell either shows
    its figure or this; tests/test_notebooks.py holds every cell to one or the other)."""
    from IPython.display import Markdown

    return Markdown(f"*No figure here: {reason}.*")


def show(fig, path):
    """Save `fig` to `path` (PNG) and return it for the notebook to display inline (`Shown`).

    A notebook shows a figure only when a cell displays it; the figure is closed here so that
    nothing else draws it twice."""
    title = fig._suptitle.get_text() if fig._suptitle is not None else next((a.get_title() for a in fig.axes if a.get_title()), "")
    path = save(fig, path)
    plt.close(fig)
    return Shown(path, title or Path(path).stem)


def calibration(table: pd.DataFrame, sigma: float = 2.0):
    """Calibration: BP against the paper's BP row per dataset, metric and input map, as
    z = (ours - paper) / combined std; the band is where a cell agrees (|z| <= sigma)."""
    sns = _sns()
    t = table[table["z"].notna()].copy()
    names = METRIC_NAMES
    metrics = [m for m in names if m in set(t["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.2), sharey=True, squeeze=False)
    order = list(dict.fromkeys(t["display"]))
    maps = list(dict.fromkeys(t["input_norm"]))
    for i, (ax, metric) in enumerate(zip(axes[0], metrics)):
        ax.axhspan(-sigma, sigma, color="tab:green", alpha=0.12, lw=0)
        ax.axhline(0, color="black", lw=0.8)
        sns.stripplot(t[t["metric"] == metric], x="display", y="z", hue="input_norm", order=order, hue_order=maps,
                      dodge=True, jitter=False, size=8, ax=ax, legend=i == len(metrics) - 1)
        ax.set(title=names[metric], xlabel="", ylabel="z = (ours - paper) / combined std" if i == 0 else "")
        ax.tick_params(axis="x", rotation=30)
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), title="input map")
    fig.suptitle(f"Calibration: BP against the paper's BP row (shaded: |z| <= {sigma:g}, the cell agrees)")
    fig.tight_layout()
    return fig


def lr_curves(choice: pd.DataFrame, paper_lr: float, labels=None):
    """The tuned stage: validation accuracy on the tuning split against the learning rate, one panel per
    dataset (the shallow nets), a line per configuration of `labels` (default: BP, SAL-1 and SAL-16 under
    each reading, MoE-16); the paper's lr marked, each line's chosen lr dotted in its colour."""
    _sns()
    c = choice[choice["depth"] == 2]
    if labels is not None:
        c = c[c["label"].isin(labels)]
    else:
        c = c[(c["method"] == "bp") | ((c["method"] == "sal") & c["areas"].isin([1, 16])) | ((c["method"] == "moe") & (c["areas"] == 16))]
    lrs = sorted(float(col[4:]) for col in c.columns if col.startswith("acc@"))
    datasets = list(dict.fromkeys(c["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.8), sharey=False, squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for _, r in c[c["dataset"] == ds].iterrows():
            line, = ax.plot(lrs, [r[f"acc@{lr:g}"] for lr in lrs], marker="o", linestyle="--" if "[" in r["label"] else "-",
                            label=r["label"])
            if pd.notna(r["lr"]):
                ax.axvline(r["lr"], color=line.get_color(), linestyle=":", linewidth=1.2)
        ax.axvline(paper_lr, color="black", linewidth=2, alpha=0.35, label=f"paper's lr {paper_lr:g}")
        ax.set_xscale("log")
        ax.set(title=DISPLAY_NAMES[ds], xlabel="learning rate", ylabel="validation accuracy, tuning split (%)")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 4), bbox_to_anchor=(0.5, -0.12), frameon=False)
    fig.suptitle("Each method at its own learning rate: accuracy on the tuning split (carved out of the training split)\n"
                 "against the lr; dotted: the lr each chose", y=1.04)
    fig.tight_layout()
    return fig


VERDICT_COLOURS = {"supported": "#1b7837", "contradicted": "#b2182b", "inconclusive": "#878787"}


def forest(frame: pd.DataFrame, columns: list[str] | None = None, fit_datasets=()):
    """The claims at a glance (claims.forest_frame): a row per (claim, dataset), a panel per column of the
    claims table, each dataset's effect with its 95% interval, the line the claim is read against (0; -5
    for non-inferiority), coloured by the dataset's verdict (Holm within the cell). Datasets a reading
    was fitted on are marked '(fit)'. Each claim has its own units: read the row label."""
    cols = columns or list(dict.fromkeys(frame["column_title"]))
    claims = list(dict.fromkeys(frame["claim"]))
    rows = [(c, d) for c in claims for d in dict.fromkeys(frame.loc[frame["claim"] == c, "dataset"])]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols) + 3.2, 0.28 * len(rows) + 1.6), sharey=True,
                             sharex=True, squeeze=False)
    y = {r: len(rows) - 1 - i for i, r in enumerate(rows)}
    for ax, col in zip(axes[0], cols):
        sub = frame[frame["column_title"] == col]
        for r in sub.itertuples():
            yy = y[(r.claim, r.dataset)]
            colour = VERDICT_COLOURS.get(r.verdict, "#878787")
            ax.plot([r.low, r.high], [yy, yy], color=colour, lw=1.6)
            ax.plot([r.estimate], [yy], "o", color=colour, ms=4)
        for c in claims:  # the line each claim is read against, over its own rows
            ys = [y[r] for r in rows if r[0] == c]
            ref = -5.0 if c == "trains_at_every_depth" else 0.0
            ax.plot([ref, ref], [min(ys) - 0.4, max(ys) + 0.4], color="black", lw=0.8)
        ax.set_title(col, fontsize=9)
        ax.set_xscale("symlog", linthresh=0.1, linscale=0.5)  # losses (~0.01) and accuracy points (~10) on one axis
        ticks = [-30, -10, -3, -1, -0.1, 0, 0.1, 1, 3, 10, 30]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.tick_params(axis="x", labelsize=7)
    for c in claims[1:]:  # a rule between claims
        edge = max(y[r] for r in rows if r[0] == c) + 0.5
        for ax in axes[0]:
            ax.axhline(edge, color="#cccccc", lw=0.6)
    labels = [f"{c.replace('_', ' ')}: {d}{' (fit)' if d in fit_datasets else ''}" for c, d in rows]
    axes[0][0].set_yticks(range(len(rows))[::-1], labels, fontsize=7)
    handles = [plt.Line2D([], [], color=v, marker="o", lw=1.6, label=k) for k, v in VERDICT_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.01))
    fig.suptitle("Every claim, every dataset: the effect and its 95% interval (symlog axis; units per claim: "
                 "accuracy points, or per doubling)", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return fig
