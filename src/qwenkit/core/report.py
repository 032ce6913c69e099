"""Reports a person opens: the same content written as ``report.md`` and a self-contained-looking ``report.html``.

A report is a list of blocks (headings, paragraphs, tables, images, code); both formats are rendered from the blocks,
so they never disagree. Images are referenced by a path relative to the report, so a run directory can be moved.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwenkit.core.checkpoint import atomic_write_text

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;
color:#1d1d1f;line-height:1.5}
table{border-collapse:collapse;margin:1em 0;font-size:0.92em}
th,td{border:1px solid #ccc;padding:4px 9px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
code,pre{background:#f6f8fa;font-family:ui-monospace,monospace}pre{padding:0.8em;overflow-x:auto}
figcaption{color:#555;font-size:0.9em}.ok{color:#137333}.fail{color:#b3261e}
"""


@dataclass(frozen=True)
class _Block:
    kind: str
    payload: Any


class Report:
    """Build with ``heading``/``text``/``table``/``image``/``code``; ``write(directory)`` renders both files."""

    def __init__(self, title: str):
        self.title = title
        self.blocks: list[_Block] = []

    def heading(self, text: str, level: int = 2) -> Report:
        self.blocks.append(_Block("heading", (level, text)))
        return self

    def text(self, markdown: str) -> Report:
        """A paragraph; supports **bold**, `code`, [links](url) and "- " bullet lines."""
        self.blocks.append(_Block("text", markdown.strip()))
        return self

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str] | None = None,
        *,
        caption: str | None = None,
        float_format: str = "{:.4g}",
    ) -> Report:
        columns = list(columns or (rows[0].keys() if rows else []))
        cells = [[_format_cell(row.get(c, ""), float_format) for c in columns] for row in rows]
        self.blocks.append(_Block("table", (columns, cells, caption)))
        return self

    def image(self, path: str | Path, caption: str = "") -> Report:
        self.blocks.append(_Block("image", (Path(path), caption)))
        return self

    def code(self, text: str) -> Report:
        self.blocks.append(_Block("code", text.rstrip("\n")))
        return self

    def disk_usage(self, run: Any) -> Report:
        """A line with the run directory's size on disk (``run`` is a :class:`qwenkit.core.runs.RunDir`)."""
        usage = run.disk_usage_bytes()
        return self.text(f"Disk use of `{run.path}`: {format_bytes(usage['total'])}, of which checkpoints "
                         f"{format_bytes(usage['checkpoints'])} (the newest `trainer.keep_last` are kept).")

    def to_markdown(self, directory: Path) -> str:
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            if block.kind == "heading":
                level, text = block.payload
                out += ["#" * level + " " + text, ""]
            elif block.kind == "text":
                out += [block.payload, ""]
            elif block.kind == "table":
                columns, cells, caption = block.payload
                if caption:
                    out += [f"*{caption}*", ""]
                out.append("| " + " | ".join(c.replace("|", "\\|") for c in columns) + " |")
                out.append("|" + "|".join("---" for _ in columns) + "|")
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
                out.append("")
            elif block.kind == "image":
                path, caption = block.payload
                out += [f"![{caption}]({_relative(path, directory)})", ""]
                if caption:
                    out += [f"*{caption}*", ""]
            elif block.kind == "code":
                out += ["```", block.payload, "```", ""]
        return "\n".join(out)

    def to_html(self, directory: Path) -> str:
        out = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for block in self.blocks:
            if block.kind == "heading":
                level, text = block.payload
                out.append(f"<h{level}>{_inline_html(text)}</h{level}>")
            elif block.kind == "text":
                out.append(_paragraph_html(block.payload))
            elif block.kind == "table":
                columns, cells, caption = block.payload
                out.append("<table>")
                if caption:
                    out.append(f"<caption>{_inline_html(caption)}</caption>")
                out.append("<tr>" + "".join(f"<th>{_inline_html(c)}</th>" for c in columns) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in cells]
                out.append("</table>")
            elif block.kind == "image":
                path, caption = block.payload
                src = html.escape(_relative(path, directory))
                out.append(f"<figure><img src='{src}' alt='{html.escape(caption)}'>")
                out.append(f"<figcaption>{_inline_html(caption)}</figcaption></figure>")
            elif block.kind == "code":
                out.append(f"<pre><code>{html.escape(block.payload)}</code></pre>")
        out.append("</body></html>")
        return "\n".join(out)

    def write(self, directory: str | Path, name: str = "report") -> tuple[Path, Path]:
        """Write ``<name>.md`` and ``<name>.html`` into ``directory``; returns both paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        md_path, html_path = directory / f"{name}.md", directory / f"{name}.html"
        atomic_write_text(md_path, self.to_markdown(directory))
        atomic_write_text(html_path, self.to_html(directory))
        return md_path, html_path


def _format_cell(value: Any, float_format: str) -> str:
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return float_format.format(value)
    return str(value)


def _relative(path: Path, directory: Path) -> str:
    """The image path as seen from the report's directory (paths given relative to the working directory too)."""
    return Path(os.path.relpath(path.resolve(), directory.resolve())).as_posix()


def _inline_html(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
    return re.sub(r"\[(.+?)\]\((.+?)\)", r"<a href='\2'>\1</a>", text)


def _paragraph_html(markdown: str) -> str:
    parts, bullets = [], []
    for line in markdown.splitlines():
        if line.lstrip().startswith("- "):
            bullets.append(f"<li>{_inline_html(line.lstrip()[2:])}</li>")
            continue
        if bullets:
            parts.append("<ul>" + "".join(bullets) + "</ul>")
            bullets = []
        parts.append(_inline_html(line))
    if bullets:
        parts.append("<ul>" + "".join(bullets) + "</ul>")
    return "<p>" + "\n".join(parts) + "</p>"


def format_bytes(size: int) -> str:
    """``1536`` -> ``1.5 KiB``: binary units, three significant digits."""
    exponent = 0
    while size >= 1024 ** (exponent + 1) and exponent < 4:
        exponent += 1
    if exponent == 0:
        return f"{size} B"
    return f"{size / 1024**exponent:.3g} {('KiB', 'MiB', 'GiB', 'TiB')[exponent - 1]}"
