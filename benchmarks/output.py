"""Writing a bench report to disk in every form asked for (JSON, Markdown, HTML).

Its own module so that the HTML page (html.py) may build on the report model (report.py) without the
two importing each other."""

from __future__ import annotations

from edgecodec.imageio import write_text_atomic

from .html import to_html
from .report import to_json, to_markdown


def write_reports(report: dict, json_path: str, md_path: str | None = None, html_path: str | None = None) -> None:
    """Every file is written atomically: a reader never sees half a report."""
    write_text_atomic(json_path, to_json(report))
    if md_path:
        write_text_atomic(md_path, to_markdown(report))
    if html_path:
        write_text_atomic(html_path, to_html(report))
