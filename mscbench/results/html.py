"""Self-contained HTML: one page with inline style, tables and images embedded as base64 (no other files)."""

from __future__ import annotations

import base64
from html import escape

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1400px; }
.scroll { overflow-x: auto; }  /* a wide table scrolls instead of widening the page */
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
caption { caption-side: bottom; text-align: left; padding-top: 0.5rem; color: #555; max-width: 1100px; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #444; }
figure { margin: 1.5rem 0; }
img { max-width: 100%; }
"""


def table(header: list[str], rows: list[list[str]], bold: set[tuple[int, int]], caption: str) -> str:
    """An HTML table; the cells at (row, column) in `bold` are strong."""
    def cell(text: str, i: int, j: int) -> str:
        content = escape(text)
        return f"<td><strong>{content}</strong></td>" if (i, j) in bold else f"<td>{content}</td>"

    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = "\n".join("<tr>" + "".join(cell(text, i, j) for j, text in enumerate(row)) + "</tr>"
                     for i, row in enumerate(rows))
    return (f'<div class="scroll"><table>\n<caption>{escape(caption)}</caption>\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody>\n</table></div>")


def image(png: bytes, title: str) -> str:
    """A PNG embedded in the page as a data URL, with its title as caption."""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(title)}">'
            f"<figcaption>{escape(title)}</figcaption></figure>")


def heading(text: str) -> str:
    return f"<h2>{escape(text)}</h2>"


def page(title: str, sections: list[str]) -> str:
    """A whole HTML document around already-rendered sections."""
    body = "\n".join(sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{escape(title)}</h1>\n{body}\n</body>\n</html>\n")
