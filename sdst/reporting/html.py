"""The Markdown this project writes (headings, paragraphs, lists, tables, images, bold, code) as one standalone
HTML page: what Snakemake's report shows for results/{dataset}/summary.md and the significance report.

Only that subset is converted (a general Markdown library would be a dependency for five constructs). Images
are embedded as data URIs, because the report shows a page in an iframe of its own, where relative paths do
not resolve. Table cells carry ``data-row`` (first cell of the row) and ``data-col`` (header) attributes, so a
reader (tests/test_html_report.py) can find a value without counting columns.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
div.scroll{overflow-x:auto}table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.2em .45em}
th{background:#f1f1f1}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{background:#f4f4f4;padding:0 .2em}img{max-width:100%}h1{font-size:1.5em}h2{font-size:1.2em}"""

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def _text(chunk: str) -> str:
    chunk = html.escape(chunk, quote=False)
    chunk = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", chunk)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", chunk)


def _image(alt: str, src: str, base: Path | None) -> str:
    path = (base / src) if base is not None else Path(src)
    if path.is_file() and path.suffix.lower() in _MIME:
        src = f"data:{_MIME[path.suffix.lower()]};base64,{base64.b64encode(path.read_bytes()).decode()}"
    return f'<img alt="{html.escape(alt)}" src="{html.escape(src)}">'


def _inline(text: str, base: Path | None) -> str:
    out, pos = [], 0
    for m in _IMAGE.finditer(text):
        out += [_text(text[pos:m.start()]), _image(m.group(1), m.group(2), base)]
        pos = m.end()
    return "".join(out + [_text(text[pos:])])


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(lines: list[str], base: Path | None) -> str:
    header, align, body = _cells(lines[0]), _cells(lines[1]), [_cells(x) for x in lines[2:]]
    numeric = [a.endswith(":") for a in align]
    out = ['<div class="scroll"><table>', "<tr>" + "".join(f"<th>{_inline(h, base)}</th>" for h in header) + "</tr>"]
    for row in body:
        cells = []
        for j, cell in enumerate(row):
            attrs = f' data-row="{html.escape(row[0])}" data-col="{html.escape(header[j] if j < len(header) else "")}"'
            cls = ' class="num"' if j < len(numeric) and numeric[j] else ""
            cells.append(f"<td{cls}{attrs}>{_inline(cell, base)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></div>")  # wide tables scroll inside the report's frame instead of being cut
    return "\n".join(out)


def markdown_to_html(text: str, title: str, base: str | Path | None = None) -> str:
    """A page for ``text``; ``base`` is the folder relative image paths are read from."""
    base = Path(base) if base is not None else None
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif m := re.match(r"(#{1,6}) (.*)", line):
            level = len(m.group(1))
            blocks.append(f"<h{level}>{_inline(m.group(2), base)}</h{level}>")
            i += 1
        elif line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            blocks.append(_table(lines[i:j], base))
            i = j
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:], base)}</li>")
                i += 1
            blocks.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"(#{1,6} |\||- )", lines[i]):
                para.append(lines[i])
                i += 1
            blocks.append(f"<p>{_inline(' '.join(para), base)}</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(blocks) + "\n</body></html>\n")


def write_html(markdown_path: str | Path, title: str, out: str | Path | None = None) -> Path:
    """``report.md`` -> ``report.html`` beside it (or ``out``)."""
    markdown_path = Path(markdown_path)
    out = Path(out) if out is not None else markdown_path.with_suffix(".html")
    out.write_text(markdown_to_html(markdown_path.read_text(), title, markdown_path.parent), encoding="utf-8")
    return out
