"""The claims table: each claim of the paper, judged under each reading and learning-rate regime.

Rows are the paper's claims (CLAIMS); columns (COLUMNS) are where we judge them:

- the paper's own statement;
- SAL under the defaults of docs/method.md, every method at the paper's lr (1e-4);
- SAL under the preset (`paper_fit`, the reading that reproduces Tables 2/3 on held-out data), lr 1e-4;
- the same two readings with every method at its own best lr, chosen on a split carved out of the
  training split (the `tuned` stage): BP, MoE and SAL each trained, not only SAL.

A cell is a claim function of paper.py run on that column's view of the stages' summaries, so every
cell says the same thing in the same words: a verdict (paper.VERDICTS) with its per-dataset counts
(supported / contradicted / inconclusive), or "not run" where no stage produced the data.

    table = claims_table(claim_cells(stages, params))   # stages: report.read_stage_outputs(...)
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from . import paper
from .schema import parse_method


@dataclass(frozen=True)
class Claim:
    id: str  # the key of claims.json and report.json
    statement: str  # the paper's claim, as it states it
    data: str  # which view it reads: "table2", "depth", "width" or "moe"
    test: object  # paper.claim_*: summary -> claim dict


CLAIMS = (
    Claim("sal_beats_bp", "SAL beats BP on nine of ten datasets (Table 2)", "table2", paper.claim_sal_beats_bp),
    Claim("accuracy_rises_with_k", "Accuracy rises with the number of areas K (Table 2)", "table2",
          paper.claim_accuracy_rises_with_k),
    Claim("train_loss_falls_with_k", "Training loss falls as K grows (Table 3)", "table2",
          paper.claim_train_loss_falls_with_k),
    Claim("gap_grows_with_depth", "BP degrades with depth while SAL does not: the gap grows (Figure 2)", "depth",
          lambda s: paper.claim_gap_grows_with(s, "depth")),
    Claim("gap_grows_with_width", "SAL's advantage over BP grows with width (Figure 3)", "width",
          lambda s: paper.claim_gap_grows_with(s, "hidden")),
    Claim("trains_at_every_depth", "SAL trains at every depth, to 128 (Figure 2)", "depth", paper.claim_trains_at_depth),
    Claim("sal_beats_moe", "SAL beats a BP-trained top-1 MoE at equal K (Figures 4-5)", "moe", paper.claim_sal_beats_moe),
)


@dataclass(frozen=True)
class Column:
    id: str
    title: str
    reading: str  # SAL's reading: "default" or a preset's name
    tuned: bool  # every method at its own chosen lr (else the paper's lr)


def columns(preset: str, paper_lr: float = 1e-4) -> tuple[Column, ...]:
    return (Column("defaults", f"defaults, lr {paper_lr:g}", "default", False),
            Column("preset", f"{preset}, lr {paper_lr:g}", preset, False),
            Column("defaults_tuned", "defaults, tuned lr", "default", True),
            Column("preset_tuned", f"{preset}, tuned lr", preset, True))


def reading_view(summary: pd.DataFrame, reading: str) -> pd.DataFrame:
    """The rows of one reading: SAL's runs under `reading` and every other method's (which have none).
    Summaries written before readings were named hold the defaults only."""
    if summary.empty:
        return summary
    if "reading" not in summary:
        return summary if reading == "default" else summary.iloc[0:0]
    return summary[(summary["method"] != "sal") | (summary["reading"] == reading)]


def depth_view(summary: pd.DataFrame, methods, depths, hidden: int) -> pd.DataFrame:
    """The rows of the depth figure's nets in a tuned summary or choice: the methods of `tuned.depth`
    (e.g. BP and SAL-4) at the depth stage's depths and width; the shallow configurations that share
    depth 2 and the width (SAL-1, SAL-16, MoE) are left out."""
    pairs = {parse_method(m) for m in methods}
    keep = [(m, int(k)) in pairs for m, k in zip(summary["method"], summary["areas"])]
    return summary[pd.Series(keep, index=summary.index) & summary["depth"].isin(depths) & (summary["hidden"] == hidden)]


def views(stages: dict[str, pd.DataFrame], column: Column, params: dict | None = None) -> dict[str, pd.DataFrame]:
    """The summaries a column's claims read: {"table2", "depth", "width", "moe"} (empty where not run).

    At the paper's lr: Tables 2/3 from the area sweep (defaults) or the preset sweep (its SAL runs beside
    the shared BP runs); depth and width from their stages, SAL under the column's reading; MoE from the
    moe stage, beside the SAL runs of the column's Table 2. Tuned: every view from the tuned stage (its
    shallow nets, and its depth nets where it ran them); width was not run at tuned lrs."""
    empty = pd.DataFrame()
    get = lambda name: stages.get(name, empty)  # noqa: E731
    if not column.tuned:
        table2 = get("area_sweep") if column.reading == "default" else get("preset_sweep")
        moe = get("moe")
        if column.reading != "default" and len(moe):
            moe = pd.concat([moe[moe["method"] == "moe"], table2[table2["method"] == "sal"]], ignore_index=True) \
                if len(table2) else empty
        return {"table2": table2, "depth": reading_view(get("depth"), column.reading),
                "width": reading_view(get("width"), column.reading), "moe": moe}
    tuned = reading_view(get("tuned"), column.reading)
    if tuned.empty:
        return {"table2": empty, "depth": empty, "width": empty, "moe": empty}
    shallow_hidden = params["area_sweep"]["hidden"] if params else tuned.loc[tuned["depth"] == 2, "hidden"].mode().iloc[0]
    table2 = tuned[(tuned["depth"] == 2) & (tuned["hidden"] == shallow_hidden)]
    depth = empty
    if params is not None:

        d = params["tuned"]["depth"]
        if (d["preset"] or "default") == column.reading:
            depth = depth_view(tuned[tuned["dataset"].isin(d["datasets"])], d["methods"], params["depth"]["depths"],
                               params["depth"]["hidden"])
    return {"table2": table2, "depth": depth, "width": empty, "moe": table2}


def claim_cells(stages: dict[str, pd.DataFrame], params: dict | None = None, preset: str = "paper_fit",
                paper_lr: float = 1e-4) -> list[dict]:
    """Every (claim, column) cell: the claim dict of paper.py with `column` and `column_title`, or
    verdict "not run" where the column's view lacks the runs the claim needs (no SAL, or nothing)."""
    cells = []
    for col in columns(preset, paper_lr):
        v = views(stages, col, params)
        for claim in CLAIMS:
            data = v[claim.data]
            if data.empty or not (data["method"] == "sal").any():
                cell = {"id": claim.id, "verdict": "not run", "counts": {}, "note": "",
                        "evidence": "no runs of this reading and learning-rate regime for this claim"}
            else:
                cell = claim.test(data)
            cells.append({**cell, "id": claim.id, "claim": claim.statement, "column": col.id, "column_title": col.title})
    return cells


def verdict_text(cell: dict) -> str:
    """'supported (3/0/2)': the verdict and its datasets supporting / contradicting / inconclusive."""
    if cell["verdict"] in ("not run", "not testable"):
        return cell["verdict"]
    c = cell["counts"]
    text = f"{cell['verdict']} ({c['supported']}/{c['contradicted']}/{c['inconclusive']})"
    return text + (f"; {cell['note']}" if cell.get("note") else "")


def paper_verdicts() -> dict[str, str]:
    """The paper's own numbers judged by the same rule where it prints them (Tables 2/3, ten datasets);
    the figures' claims rest on curves it prints no numbers for."""
    own = paper.paper_summary()
    return {c.id: (verdict_text(c.test(own)) if c.data == "table2" else "claimed (no numbers printed)") for c in CLAIMS}


def claims_table(cells: list[dict]) -> pd.DataFrame:
    """One row per claim: the paper's statement, its own numbers judged by our rule, then each column's
    verdict with its counts."""
    own = paper_verdicts()
    rows = {c.id: {"claim": c.statement, "the paper's numbers": own[c.id]} for c in CLAIMS}
    for cell in cells:
        rows[cell["id"]][cell["column_title"]] = verdict_text(cell)
    return pd.DataFrame(list(rows.values()))


def table_markdown(table: pd.DataFrame) -> str:
    """The claims table in Markdown (the README's and the report's headline)."""
    head = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns)
    return head + "\n" + "\n".join("| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False))


def bottom_line(cells: list[dict]) -> str:
    """One plain sentence: the headline claim (SAL beats BP) under the paper's protocol and against a
    BP trained at its own best learning rate, under the reading that reproduces Tables 2/3."""
    by = {(c["id"], c["column"]): c for c in cells}
    at_paper, tuned = by.get(("sal_beats_bp", "preset")), by.get(("sal_beats_bp", "preset_tuned"))
    if at_paper is None or at_paper["verdict"] == "not run":
        return "The headline claim (SAL beats BP) has not been tested here yet."
    text = (f"At the paper's learning rate, under the reading that reproduces its Tables 2/3, the headline claim "
            f"(SAL beats BP) is {verdict_text(at_paper)}")
    if tuned is None or tuned["verdict"] == "not run":
        return text + "; against a BP trained at its own best learning rate it has not been tested yet."
    return text + f"; with every method at its own best learning rate it is {verdict_text(tuned)}."
