"""A tiny report model rendered to both Markdown and self-contained-folder HTML.

Job: eval and drift reports are lists of blocks (heading, paragraph, table, image); this module
renders the same list to `report.md` and `report.html` (images are PNG files next to them, linked
relatively, so the folder can be zipped, attached to MLflow, or opened from disk). Also holds the
matplotlib set-up every plot uses.

Trade-off: no Markdown or templating dependency; HTML is escaped by hand with `html.escape` and
styled with a few lines of inline CSS.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class Image:
    path: str  # relative to the report folder
    alt: str


Block = Heading | Para | Table | Image


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if v != 0 and (abs(v) < 10 ** (-digits) or abs(v) >= 1e6):
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def to_markdown(title: str, blocks: Sequence[Block]) -> str:
    out = [f"# {title}", ""]
    for b in blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            out += [b.text, ""]
        elif isinstance(b, Table):
            out.append("| " + " | ".join(b.header) + " |")
            out.append("| " + " | ".join("---" for _ in b.header) + " |")
            for row in b.rows:
                out.append("| " + " | ".join(fmt(c).replace("|", "\\|") for c in row) + " |")
            out.append("")
        else:
            out += [f"![{b.alt}]({b.path})", ""]
    return "\n".join(out)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%;border:1px solid #eee;margin:0.5em 0}.flag{color:#b00;font-weight:bold}"
)


def _inline(text: str) -> str:
    """Escape, then render `code` and **bold** the way the Markdown does."""
    parts = html.escape(text).split("`")
    for i in range(1, len(parts), 2):
        parts[i] = f"<code>{parts[i]}</code>"
    joined = "".join(parts)
    bold = joined.split("**")
    for i in range(1, len(bold), 2):
        bold[i] = f"<strong>{bold[i]}</strong>"
    return "".join(bold)


def to_html(title: str, blocks: Sequence[Block]) -> str:
    out = [
        "<!doctype html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for b in blocks:
        if isinstance(b, Heading):
            lvl = min(max(b.level, 2), 6)
            out.append(f"<h{lvl}>{html.escape(b.text)}</h{lvl}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in b.header) + "</tr>")
            for row in b.rows:
                cells = []
                for c in row:
                    cls = ' class="flag"' if c == "DRIFT" else ""
                    cells.append(f"<td{cls}>{html.escape(fmt(c))}</td>")
                out.append("<tr>" + "".join(cells) + "</tr>")
            out.append("</table>")
        else:
            out.append(f'<img src="{html.escape(b.path)}" alt="{html.escape(b.alt)}">')
    out.append("</body></html>")
    return "\n".join(out)


def write_report(
    out_dir: Path, title: str, blocks: Sequence[Block], summary: dict[str, Any]
) -> dict[str, Path]:
    """Write report.md, report.html and summary.json into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": out_dir / "report.md",
        "html": out_dir / "report.html",
        "json": out_dir / "summary.json",
    }
    paths["markdown"].write_text(to_markdown(title, blocks) + "\n", encoding="utf-8")
    paths["html"].write_text(to_html(title, blocks) + "\n", encoding="utf-8")
    paths["json"].write_text(
        json.dumps(clean_json(summary), indent=2, default=_json_default) + "\n", encoding="utf-8"
    )
    return paths


def clean_json(o: Any) -> Any:
    """NaN/inf -> None (strict JSON), numpy scalars/arrays -> Python, tuples -> lists, recursively."""
    if isinstance(o, dict):
        return {str(k): clean_json(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [clean_json(v) for v in o]
    if hasattr(o, "tolist") and not isinstance(o, str):
        return clean_json(o.tolist())
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
