"""A small Markdown -> HTML renderer for the paper cards (`experiments/<id>/README.md`) on the site.

It covers what the cards use, without a dependency: ATX headings, paragraphs, `-`/`*`/`1.` lists
(nested by indentation, continuation lines folded in), pipe tables, fenced code blocks, HTML
comments (dropped), and inline code, links, images, **bold** and *italic*. Everything else is text,
HTML-escaped: a card can never inject markup into the page.
"""
from __future__ import annotations

import html
import re

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+(.*)$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_CODE = re.compile(r"`([^`]+)`")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")
_ABSOLUTE = re.compile(r"^(https?://|#)", re.I)


def _link(text: str, url: str) -> str:
    """A link when it is absolute (http, https) or an anchor; else its text (a card's relative links
    point into the repository, which the site does not carry)."""
    url = html.unescape(url)
    return f'<a href="{html.escape(url, quote=True)}">{text}</a>' if _ABSOLUTE.match(url) else text


def _image(alt: str, url: str) -> str:
    url = html.unescape(url)
    return f'<img alt="{alt}" src="{html.escape(url, quote=True)}">' if _ABSOLUTE.match(url) else f"[image: {alt}]"


def inline(text: str) -> str:
    """One line or paragraph of Markdown text as HTML (escaped first, then code, images, links, emphasis)."""
    codes: list[str] = []

    def keep(m: re.Match) -> str:
        codes.append(f"<code>{m.group(1)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    s = _CODE.sub(keep, html.escape(text, quote=False))
    s = _IMAGE.sub(lambda m: _image(m.group(1), m.group(2)), s)
    s = _LINK.sub(lambda m: _link(m.group(1), m.group(2)), s)
    s = _BOLD.sub(r"<strong>\1</strong>", s)
    s = _ITALIC.sub(r"<em>\1</em>", s)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], s)


def _cells(line: str) -> list[str]:
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]


def _table(lines: list[str]) -> str:
    head, rows = _cells(lines[0]), [_cells(ln) for ln in lines[2:]]
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr></thead>", "<tbody>"]
    out += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows]
    return "\n".join(out + ["</tbody>", "</table>"])


def _list(lines: list[str]) -> str:
    """Items (possibly nested by indentation) with their continuation lines."""
    out: list[str] = []
    stack: list[tuple[int, str]] = []  # (indent, tag) of the open lists
    item_text: list[str] = []

    def flush() -> None:
        if item_text:
            out.append(inline(" ".join(item_text)))
            item_text.clear()

    for ln in lines:
        m = _ITEM.match(ln)
        if not m:
            item_text.append(ln.strip())
            continue
        flush()
        indent, tag = len(m.group(1).expandtabs(4)), "ul" if m.group(2) in "-*+" else "ol"
        while stack and indent < stack[-1][0]:
            out.append(f"</li></{stack.pop()[1]}>")
        if not stack or indent > stack[-1][0]:
            out.append(f"<{tag}><li>")
            stack.append((indent, tag))
        else:
            out.append("</li><li>")
        item_text.append(m.group(3))
    flush()
    while stack:
        out.append(f"</li></{stack.pop()[1]}>")
    return "".join(out)


def render(md: str) -> str:
    """The Markdown text as an HTML fragment."""
    md = re.sub(r"<!--.*?-->", "", md, flags=re.S)
    lines = md.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        ln = lines[i]
        if not ln.strip():
            i += 1
            continue
        if _FENCE.match(ln):
            fence, body = _FENCE.match(ln).group(1), []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                body.append(lines[i])
                i += 1
            out.append("<pre><code>" + html.escape("\n".join(body), quote=False) + "</code></pre>")
            i += 1
            continue
        m = _HEADING.match(ln)
        if m:
            level = len(m.group(1))
            out.append(f"<h{level}>{inline(m.group(2))}</h{level}>")
            i += 1
            continue
        if "|" in ln and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]):
            block = [ln, lines[i + 1]]
            i += 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                block.append(lines[i])
                i += 1
            out.append(_table(block))
            continue
        if _ITEM.match(ln):
            block = [ln]
            i += 1
            while i < len(lines) and lines[i].strip() and not _HEADING.match(lines[i]) and not _FENCE.match(lines[i]):
                block.append(lines[i])
                i += 1
            out.append(_list(block))
            continue
        para = [ln.strip()]
        i += 1
        while (i < len(lines) and lines[i].strip() and not _HEADING.match(lines[i]) and not _FENCE.match(lines[i])
               and not _ITEM.match(lines[i]) and not (i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]))):
            para.append(lines[i].strip())
            i += 1
        out.append(f"<p>{inline(' '.join(para))}</p>")
    return "\n".join(out)
