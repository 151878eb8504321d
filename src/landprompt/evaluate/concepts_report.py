"""Outputs of the concept benchmark: ``report.json``, ``report.md`` and ``auc.png`` in one folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from landprompt.evaluate.report import markdown_table, write_json

FILES = {"json": "report.json", "markdown": "report.md", "png": "auc.png"}


def write_concepts_report(report: dict[str, Any], folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the report's three files (each atomically) and return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / name for kind, name in FILES.items()}
    if "mean_auc" not in report:
        del paths["png"]
    else:
        plot_auc(report, paths["png"])
    from landprompt.files import atomic_path

    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(markdown(report), encoding="utf-8")
    write_json(report, paths["json"])
    return paths


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: settings, counts, mean AUC per setting, one row per concept."""
    settings = report["settings"]
    lines = ["# LUCAS concept benchmark", "", "## Settings", ""]
    lines += markdown_table(["setting", "value"], [(k, _text(v)) for k, v in settings.items()])
    lines += ["", "## Points", ""]
    lines += markdown_table(["count", "points"], list(report["counts"].items()))
    prompts = settings["prompts"] if "mean_auc" in report else []
    if prompts:
        lines += ["", "## Mean ROC AUC of the scored concepts", ""]
        lines += markdown_table(["prompts", "mean AUC"], [(s, _num(report["mean_auc"][s])) for s in prompts])
    lines += ["", "## Concepts", ""]
    header = ["group", "concept", "points", "present", "prevalence"]
    header += [f"{s} {m}" for s in prompts for m in ("AUC", "AP")]
    rows = []
    for entry in report["concepts"]:
        row = [entry["group"], entry["name"], entry["points"], entry["present"], _num(entry["prevalence"])]
        for setting in prompts:
            result = entry.get("results", {}).get(setting)
            if result is None:
                row += [entry["status"], ""]
            else:
                row += [
                    _ci(result["auc"], result["auc_interval"]),
                    _ci(result["average_precision"], result["ap_interval"]),
                ]
        rows.append(row)
    lines += markdown_table(header, rows)
    if prompts:
        level = f"{100 * settings['confidence']:g} %"
        lines += [
            "",
            f"Intervals: {level} spatial-block bootstrap ({settings['bootstrap']} replicates, "
            f"{settings['block_km']:g} km blocks). Chance AUC is 0.5; chance AP is the prevalence.",
        ]
    return "\n".join(lines) + "\n"


def plot_auc(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """AUC of every scored concept per prompt setting, sorted by the mean over settings, chance at 0.5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from landprompt.files import atomic_path

    prompts = report["settings"]["prompts"]
    scored = [e for e in report["concepts"] if e["status"] == "scored"]
    scored.sort(key=lambda e: np.mean([e["results"][s]["auc"] for s in prompts]))
    fig, ax = plt.subplots(figsize=(7.5, 1.5 + 0.28 * max(len(scored), 1)), dpi=110)
    y = np.arange(len(scored))
    for n, setting in enumerate(prompts):
        offset = (n - (len(prompts) - 1) / 2) * 0.18
        auc = np.array([e["results"][setting]["auc"] for e in scored])
        low, high = (
            np.array([(e["results"][setting]["auc_interval"] or [np.nan, np.nan])[i] for e in scored])
            for i in (0, 1)
        )
        ax.errorbar(
            auc,
            y + offset,
            xerr=[auc - low, high - auc] if len(scored) else None,
            fmt="o",
            ms=4,
            capsize=2,
            label=f"{setting} (mean {report['mean_auc'][setting]:.3f})",
        )
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_yticks(y, [e["name"] for e in scored], fontsize=7)
    ax.set(
        xlim=(0, 1.02),
        xlabel="ROC AUC",
        title=f"LUCAS concepts: ROC AUC per prompt style ({len(scored)} scored)",
    )
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _ci(value: float, interval: list[float] | None) -> str:
    return f"{value:.3f}" + ("" if interval is None else f" [{interval[0]:.3f}, {interval[1]:.3f}]")


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)
