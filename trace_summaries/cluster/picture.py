"""What a person sees of a clustering run in the Dagster UI: a 2-D scatter plot coloured by cluster (a PNG in
Markdown metadata, as Dagster's docs show plots) and a table of the clusters with their change since the
previous day, error rate, cost and two example titles."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

_MAX_TITLE = 60
_MAX_NAME = 48


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def scatter_png(clusters: Sequence[Mapping[str, Any]], *, title: str) -> bytes:
    """The members' 2-D layout, one colour per cluster (noise in grey, smaller), legend by cluster id."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5.5), dpi=80)
    palette = plt.get_cmap("tab20")
    colour = 0
    for cluster in clusters:
        xs = [member["x"] for member in cluster["members"]]
        ys = [member["y"] for member in cluster["members"]]
        if cluster["label"] == -1:
            axes.scatter(xs, ys, s=8, c="#b0b0b0", label=f"noise ({len(xs)})", zorder=1)
            continue
        axes.scatter(
            xs,
            ys,
            s=18,
            color=palette(colour % 20),
            label=_clip(f"{cluster['id']}: {cluster['title']} ({len(xs)})", _MAX_NAME),
            zorder=2,
        )
        colour += 1
    axes.set_title(title)
    axes.set_xticks([])
    axes.set_yticks([])
    if clusters:
        axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def scatter_markdown(png: bytes) -> str:
    return f"![clusters](data:image/png;base64,{base64.b64encode(png).decode()})"


def _change(lineage: Mapping[str, Any]) -> str:
    state = lineage.get("state", "new")
    if state == "continuing":
        change = int(lineage.get("size_change") or 0)
        return f"continuing ({change:+d})"
    if state == "merged":
        return f"merged from {', '.join(lineage.get('merged_from', []))}"
    if state == "split":
        return f"split from {lineage.get('split_from', '')}"
    return str(state)


def clusters_table(clusters: Sequence[Mapping[str, Any]], titles: Mapping[str, str]) -> str:
    """One row per cluster (noise last): id, name, size, change since yesterday, error rate, cost, two
    example titles."""
    lines = [
        "| id | name | size | since yesterday | error rate | avg cost (USD) | total cost (USD) | examples |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cluster in clusters:
        metrics = cluster.get("metrics", {})
        examples = [titles.get(member["trace_id"], "") for member in cluster["members"][:2]]
        lines.append(
            "| "
            + " | ".join(
                [
                    str(cluster["id"]),
                    _clip(cluster["title"], _MAX_NAME),
                    str(cluster["size"]),
                    "" if cluster["label"] == -1 else _change(cluster.get("lineage", {})),
                    f"{metrics.get('error_rate', 0.0):.0%}",
                    f"{metrics.get('avg_cost_usd', 0.0):.6f}",
                    f"{metrics.get('total_cost_usd', 0.0):.4f}",
                    "<br>".join(_clip(example, _MAX_TITLE) for example in examples if example),
                ]
            )
            + " |"
        )
    return "\n".join(lines)
