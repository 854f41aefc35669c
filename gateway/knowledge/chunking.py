"""Cut a business's Markdown or text document into fact-sized pieces for retrieval.

A 0.5B model answering a phone call does best with two or three short, self-contained facts in
its prompt, not a page of text: so each piece is one paragraph, list item group or a few
sentences (about 25-80 words), and it keeps the path of headings above it ("Prices > Cleaning"),
because the heading often carries the words a caller uses ("how much is a cleaning?" against
"## Prices / Cleaning: 90 dollars"). Tiny paragraphs are merged with their neighbours in the same
section (a price list of one-line items becomes one chunk); long ones are split at sentence ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

MIN_WORDS = 25  # a piece shorter than this is merged with the next one in its section
MAX_WORDS = 80  # ... as long as the merged piece stays within this

_ATX_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT_UNDERLINE = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREVIATIONS = {"dr", "mr", "mrs", "ms", "st", "no", "vs", "etc", "e.g", "i.e", "a.m", "p.m", "jr", "sr", "approx"}


@dataclass(frozen=True)
class TextChunk:
    """One fact-sized piece of a document, before it is indexed."""

    heading: tuple[str, ...]  # the headings above it, outermost first
    text: str

    @property
    def heading_path(self) -> str:
        return " > ".join(self.heading)


def chunk_document(text: str, title: str = "") -> list[TextChunk]:
    """Split a Markdown (or plain text) document into fact-sized chunks.

    `title` (usually the humanised file name) is the heading of text that has no heading above
    it, so a plain `parking.txt` still matches "parking" questions.
    """
    chunks: list[TextChunk] = []
    for heading, blocks in _sections(_HTML_COMMENT.sub("", text)):
        path = heading or ((title,) if title else ())
        units = [unit for block in blocks for unit in _units(block)]
        chunks.extend(TextChunk(path, piece) for piece in _pack(units))
    return chunks


def humanise(stem: str) -> str:
    """"opening-hours_2024" -> "Opening hours 2024": a readable heading from a file name."""
    words = re.sub(r"[-_.]+", " ", stem).strip()
    return words[:1].upper() + words[1:]


def word_count(text: str) -> int:
    return len(text.split())


def _sections(text: str) -> Iterator[tuple[tuple[str, ...], list[list[str]]]]:
    """Yield (heading path, blocks of lines) per section; blocks are separated by blank lines."""
    path: list[tuple[int, str]] = []  # (level, heading) of the headings above the current line
    blocks: list[list[str]] = []
    block: list[str] = []
    in_fence = False
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        level, name = (0, "") if in_fence else _heading(line, lines[i] if i < len(lines) else "", bool(block))
        if level and not _ATX_HEADING.match(line):
            i += 1  # a setext heading: skip its underline
        if level or not line.strip() or (not in_fence and _SETEXT_UNDERLINE.match(line)):
            if block:  # a blank line, a heading or a thematic break ends the block
                blocks.append(block)
                block = []
        else:
            block.append(line)
        if level:
            if blocks:
                yield tuple(n for _, n in path), blocks
            blocks = []
            path = [(lvl, n) for lvl, n in path if lvl < level] + [(level, name)]
    if block:
        blocks.append(block)
    if blocks:
        yield tuple(n for _, n in path), blocks


def _heading(line: str, next_line: str, in_block: bool) -> tuple[int, str]:
    """(level, text) if `line` is an ATX ("## Prices") or setext (underlined) heading, else (0, "")."""
    match = _ATX_HEADING.match(line)
    if match:
        return len(match.group(1)), _inline(match.group(2))
    setext = line.strip() and not in_block and not _LIST_ITEM.match(line) and not _SETEXT_UNDERLINE.match(line)
    if setext and _SETEXT_UNDERLINE.match(next_line):
        return (1 if next_line.strip().startswith("=") else 2), _inline(line)
    return 0, ""


def _units(block: list[str]) -> Iterator[str]:
    """The smallest pieces of a block that stand on their own: list items, table rows, sentences."""
    if any(_LIST_ITEM.match(line) for line in block):
        items: list[list[str]] = []
        for line in block:
            if _LIST_ITEM.match(line) or not items:
                items.append([_LIST_ITEM.sub("", line, count=1)])
            else:
                items[-1].append(line)  # a wrapped continuation line
        for item in items:
            yield from _sentences(_inline(" ".join(item)))
    elif all(line.lstrip().startswith("|") for line in block):
        yield from _table_rows(block)
    else:
        yield from _sentences(_inline(" ".join(block)))


def _table_rows(block: list[str]) -> Iterator[str]:
    """Each row as one fact: "X-ray: 40 dollars", or "X-ray: Price 40 dollars, Time 10 min"."""
    rows = [[_inline(cell) for cell in line.strip().strip("|").split("|")] for line in block]
    header: list[str] = []
    if len(block) > 1 and _TABLE_RULE.match(block[1]):
        header, rows = rows[0], rows[2:]
    for cells in rows:
        if len(cells) > 2 and header:
            rest = [f"{name} {cell}".strip() for name, cell in zip(header[1:], cells[1:], strict=False) if cell]
        else:
            rest = [cell for cell in cells[1:] if cell]
        if cells[0] and rest:
            yield cells[0] + ": " + ", ".join(rest)
        elif cells[0] or rest:
            yield cells[0] or ", ".join(rest)


def _sentences(paragraph: str) -> Iterator[str]:
    """The paragraph itself if short enough, else its sentences (each at most MAX_WORDS words)."""
    if not paragraph:
        return
    if word_count(paragraph) <= MAX_WORDS:
        yield paragraph
        return
    for sentence in split_sentences(paragraph):
        words = sentence.split()
        for start in range(0, len(words), MAX_WORDS):  # a run-on "sentence": cut it by words
            yield " ".join(words[start : start + MAX_WORDS])


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, not cut after abbreviations or initials ("Dr. Patel", "J. Smith")."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        last_word = text[start : match.start()].split()[-1].rstrip(".!?").lower() if match.start() > start else ""
        if last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha()):
            continue  # "Dr. Patel", "J. Smith": not a sentence end
        sentences.append(text[start : match.start()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def _pack(units: list[str]) -> list[str]:
    """Merge consecutive units of one section until a piece has MIN_WORDS (never over MAX_WORDS)."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for unit in units:
        n = word_count(unit)
        if current and (size >= MIN_WORDS or size + n > MAX_WORDS):
            pieces.append(_join(current))
            current, size = [], 0
        current.append(unit)
        size += n
    if current:
        if pieces and size < MIN_WORDS and word_count(pieces[-1]) + size <= MAX_WORDS:
            pieces[-1] = _join([pieces[-1], *current])  # a tiny tail joins the piece before it
        else:
            pieces.append(_join(current))
    return pieces


def _join(units: list[str]) -> str:
    """Join units into one text, ending each with punctuation so list items read as sentences."""
    return " ".join(unit if unit[-1] in ".!?:;" else unit + "." for unit in units)


def _inline(text: str) -> str:
    """Plain text of inline Markdown: links and images keep their text, emphasis marks go."""
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _EMPHASIS.sub("", text)
    return " ".join(text.split())


def chunk_fact_list(text: str) -> list[TextChunk]:
    """One chunk per list item of free text (an agent's `instructions`): "- Opening hours: Mon-Fri 8-5".

    Users write an agent's facts as a flat bullet list with no headings; packed together as in a
    document, one chunk would hold the parking, the prices and the hours, and the best retrieved
    fact would be all of them. A short "Label:" before the fact becomes its heading, as a Markdown
    heading would. Lines that are not list items (the role, the style rules) are not facts.
    """
    chunks = []
    for line in text.splitlines():
        if not _LIST_ITEM.match(line):
            continue
        item = _inline(_LIST_ITEM.sub("", line, count=1))
        label, sep, fact = item.partition(": ")
        if sep and fact and len(label.split()) <= 4:
            chunks.append(TextChunk((label,), fact))
        elif item:
            chunks.append(TextChunk((), item))
    return chunks
