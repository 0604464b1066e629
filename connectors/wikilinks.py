"""Obsidian wiki links made readable: ``[[target|alias]]`` -> ``alias``, ``[[note#h]]`` -> ``note > h``.

Embeds of media (``![[photo.png]]``) are dropped, other embeds become ``[embed: name]``; inline
code spans are left as they are (code blocks are the caller's to protect). The link targets are
collected in order, for the note's ``links`` metadata.
"""

from __future__ import annotations

import os
import re

_MEDIA_SUFFIXES = frozenset(
    [
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".bmp",
        ".svg",
        ".webp",
        ".avif",
        ".tif",
        ".tiff",
        ".ico",
        ".heic",
        ".mp3",
        ".wav",
        ".m4a",
        ".ogg",
        ".flac",
        ".3gp",
        ".webm",
        ".mp4",
        ".mov",
        ".mkv",
        ".ogv",
        ".pdf",
    ]
)
_WIKILINK = re.compile(r"(!?)\[\[([^\[\]\n]+?)\]\]")
_CODE_SPAN = re.compile(r"(`+)(?:.|\n)*?(?<!`)\1(?!`)")


def convert_line(line: str, links: list[str]) -> str:
    """Wiki links of one line made readable, leaving inline code spans as they are."""
    if "[[" not in line:
        return line
    out: list[str] = []
    position = 0
    for span in _CODE_SPAN.finditer(line):
        out.append(_WIKILINK.sub(lambda m: _wikilink(m, links), line[position : span.start()]))
        out.append(span.group(0))
        position = span.end()
    out.append(_WIKILINK.sub(lambda m: _wikilink(m, links), line[position:]))
    return "".join(out)


def _wikilink(match: re.Match[str], links: list[str]) -> str:
    embed, inner = match.group(1), match.group(2)
    target, alias = inner, None
    for separator in ("\\|", "|"):
        if separator in inner:
            target, alias = inner.split(separator, 1)
            break
    target = target.strip()
    note, *anchors = target.split("#")
    note = note.strip()
    headings = [a.strip() for a in anchors if a.strip() and not a.strip().startswith("^")]
    readable = " > ".join([part for part in [note, *headings] if part]) or target
    if embed and os.path.splitext(note)[1].lower() in _MEDIA_SUFFIXES:
        return ""
    if note:
        links.append(note)
    if embed:
        return f"[embed: {readable}]"
    if alias is not None and alias.strip():
        return alias.strip()
    return readable
