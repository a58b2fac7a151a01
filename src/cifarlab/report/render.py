"""The run report: one list of sections rendered twice, as self-contained HTML (images
embedded, opens offline) and as Markdown that links the PNGs under plots/."""
from __future__ import annotations

import base64
import contextlib
import html
import io
from dataclasses import dataclass
from pathlib import Path

from torch import nn


@dataclass
class Section:
    title: str
    kind: str  # "table" (list of (key, value) rows), "image" (a PNG path) or "pre" (text)
    body: object


def model_summary(model: nn.Module, image_size: int) -> str:
    """torchsummary's layer table for one 3-channel image, captured as text."""
    from torchsummary import summary

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        summary(model, (3, image_size, image_size), device="cpu")
    return buffer.getvalue()


def _html_section(section: Section) -> str:
    title = f"<h2>{html.escape(section.title)}</h2>"
    if section.kind == "table":
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in section.body)
        return f"<section>{title}<table>{rows}</table></section>"
    if section.kind == "image":
        data = base64.b64encode(Path(section.body).read_bytes()).decode()
        return (f'<section>{title}<img alt="{html.escape(section.title)}" '
                f'src="data:image/png;base64,{data}"></section>')
    return (f"<section>{title}<details><summary>show</summary><pre>{html.escape(str(section.body))}</pre>"
            "</details></section>")


def render_html(title: str, sections: list[Section]) -> str:
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 10px;text-align:left}"
             "img{max-width:100%}pre{background:#f6f6f6;padding:1em;overflow-x:auto}")
    body = "\n".join(_html_section(section) for section in sections)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def _markdown_section(section: Section, relative_to: Path) -> str:
    lines = [f"## {section.title}", ""]
    if section.kind == "table":
        lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in section.body]
    elif section.kind == "image":
        target = Path(*[".."] * len(relative_to.parts)) / section.body
        lines.append(f"![{section.title}]({target.as_posix()})")
    else:
        lines += ["```", str(section.body).rstrip(), "```"]
    return "\n".join(lines) + "\n"


def render_markdown(title: str, sections: list[Section], relative_to: Path) -> str:
    """Markdown with image links relative to the folder (`relative_to`) the file is written in."""
    return f"# {title}\n\n" + "\n".join(_markdown_section(s, relative_to) for s in sections)
