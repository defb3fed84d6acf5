"""`forensics report --html OUT.html`: one self-contained page (no external file, script or font):
the tables (each named after the paper's table it mirrors, or marked as ours), the ASR plots and
face grids as embedded PNGs, the protocol differences, and the commands and versions behind them."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from latticelock.tools.forensics.figures import figures
from latticelock.tools.forensics.tables import Table, protocol_differences, tables

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f0f0f0; }
.ours { color: #555; font-weight: normal; font-size: 0.8em; }
.note { color: #555; font-size: 0.85em; margin: 0.2em 0; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
code, pre { background: #f6f6f6; padding: 0.1em 0.3em; }
"""


def _table(table: Table) -> str:
    e = html.escape
    tag = "" if table.paper else ' <span class="ours">(ours: not in the paper)</span>'
    head = "".join(f"<th>{e(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in table.rows)
    notes = "".join(f'<p class="note">{e(n)}</p>' for n in table.notes)
    return f"<h3>{e(table.name)}: {e(table.title)}{tag}</h3><table><tr>{head}</tr>{body}</table>{notes}"


def _image(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"><figcaption class="note">{html.escape(name)}</figcaption></figure>'


def render(report) -> str:
    e = html.escape
    pictures = figures(report)
    grids = {k: v for k, v in pictures.items() if k.startswith("faces_")}
    plots = {k: v for k, v in pictures.items() if k not in grids}
    p = report.provenance
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>LatticeLock forensics report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>LatticeLock: what a thief gets from a stolen flash, or a stolen device</h1>",
        f"<p>tau = {report.threshold['tau']:.4f} (the paper: {report.threshold['paper_tau']}); "
        f"{report.data['victims']} victims, {report.data['public_faces']} public faces; runtime {report.runtime_s:.0f} s.</p>",
        "<h2>Tables</h2>",
        *(_table(t) for t in tables(report)),
        "<h2>Face grids</h2>",
        ("<p class='note'>Generator: " + e(report.generator["description"]) + "</p>") if report.generator else
        "<p>No face generator was used: no grids.</p>",
        *(_image(k, v) for k, v in grids.items()),
        "<h2>Attack success against guesses</h2>",
        *(_image(k, v) for k, v in plots.items()),
        "<h2>Protocol differences from the paper</h2><ul>",
        *(f"<li>{e(d)}</li>" for d in protocol_differences(report)),
        "</ul>",
        *(f'<p class="note">note: {e(n)}</p>' for n in report.notes),
        "<h2>How this was produced</h2>",
        *(f"<pre>{e(c)}</pre>" for c in p.get("commands", [])),
        "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in p.get("versions", {}).items()) + "</table>",
        f"<p class='note'>hardware: {e(str(p.get('hardware', '-')))}; decoders: {e(report.data.get('decoder_backend', '-'))}</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_html(report, path: Path) -> None:
    Path(path).write_text(render(report))
