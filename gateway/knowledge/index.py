"""A business's own documents, indexed in SQLite FTS5 for sub-millisecond retrieval during a call.

The phone agent's small LLM only knows what is in its prompt, so before each reply the caller's
question is looked up here and the few matching facts are put into the prompt. That lookup sits
on the critical path of every turn, so it must cost well under 15 ms: SQLite's FTS5 index with
bm25 ranking and the porter stemmer does it in well under a millisecond for a few hundred chunks,
with no model and no new dependency.

Relevance: bm25 always ranks *something* first, and a 0.5B model handed a wrong "fact" repeats
it, so a chunk is only returned when it covers the question well enough (see `_relevant`);
otherwise `Retrieval.found` is False and the agent says it does not know.

Documents change while the agent runs (the owner edits the price list): `maybe_refresh()` is cheap
enough to call on every turn and re-indexes only files whose size or mtime changed.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.knowledge.chunking import TextChunk, chunk_document, chunk_fact_list, humanise
from gateway.knowledge.implied import implied_words
from gateway.knowledge.query import (
    LIGHT_WORDS,
    STOP_WORDS,
    QueryPlan,
    TermGroup,
    join_split_words,
    plan_query,
    words_of,
)
from gateway.knowledge.sounds import neighbours, vocabulary_of

SUFFIXES = frozenset({".md", ".markdown", ".txt"})
MIN_COVERAGE = 0.6  # share of the question's (idf-weighted) content a chunk must contain
COMMON_SHARE = 0.5  # a word in more than this share of the chunks says nothing about the topic
MIN_CHUNKS_FOR_COMMON = 4  # ... but in a tiny knowledge base every word is in "half" of it
LIGHT_WEIGHT = 0.5  # light words ("before", "work") only rank: half their idf, never needed for relevance
HEADING_WEIGHT = 2.0  # bm25 weight of the heading column relative to the text
IMPLIED_WEIGHT = 0.5  # ... and of the words a chunk implies ("wednesday" inside "Tuesday to Saturday")
INTENT_FLOOR = 0.1  # an intent found in most chunks ("hour" in a small file) still answers "how long?"
CANDIDATES = 50  # bm25's best candidates that are checked for relevance
MAX_CACHED_TERMS = 10_000
SCHEMA_VERSION = 2  # 2: the implied column

_FileState = tuple[int, int]  # (mtime_ns, size): what refresh() compares

_SCHEMA = f"""
CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5(heading, body, implied, source UNINDEXED,
    tokenize='porter unicode61');
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL);
PRAGMA user_version = {SCHEMA_VERSION};
"""


class KnowledgeError(ValueError):
    """The knowledge sources are unusable (a missing path, an unsupported file)."""


@dataclass(frozen=True)
class Chunk:
    text: str
    source: Path
    heading: str  # the heading path, "Harbor Dental > Prices"
    score: float  # 0..1: the idf-weighted share of the question's terms this chunk contains


@dataclass(frozen=True)
class Retrieval:
    chunks: tuple[Chunk, ...]
    elapsed_ms: float  # the whole retrieve() call, including the lazy first index
    question: str = ""

    @property
    def found(self) -> bool:
        return bool(self.chunks)


@dataclass(frozen=True)
class Changes:
    """What a refresh re-indexed; false when nothing changed."""

    added: tuple[Path, ...] = ()
    modified: tuple[Path, ...] = ()
    removed: tuple[Path, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.modified or self.removed)


@dataclass
class _Stats:
    """Per-index-version cache: document frequencies of term groups (cleared on every change)."""

    chunks: int = 0
    rowids: dict[str, frozenset[int]] = field(default_factory=dict)
    vocabulary: dict[str, str] | None = None  # every word of every chunk and its sound key (`sounds`)
    neighbours: dict[str, tuple[str, ...]] = field(default_factory=dict)


class KnowledgeBase:
    """Searchable facts from Markdown/text files and folders (searched recursively).

    Thread-safe: calls arrive from several call threads; one lock serialises the SQLite
    connection, and refreshes are serialised separately so `maybe_refresh` never waits.
    """

    def __init__(self, sources: Sequence[str | Path], db_path: str | Path = ":memory:",
                 texts: Mapping[str, str] | None = None) -> None:
        """`texts`: documents that are not files, by name ("instructions": the facts an agent's
        instructions list, see `chunk_fact_list`); indexed with the files, never changed."""
        self.sources = tuple(_checked_source(Path(s)) for s in sources)
        self._texts = {f"<{name}>": text for name, text in (texts or {}).items()}
        self._db = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()
        self._last_check = -math.inf
        self._stats = _Stats()
        with self._lock:
            self._open_schema()
            self._files = {p: (m, s) for p, m, s in self._db.execute("SELECT path, mtime_ns, size FROM files")}
            self._stats.chunks = self._count_chunks()
        self._ready = False  # the first retrieve() refreshes: a persisted index may be stale

    # -- indexing -------------------------------------------------------------------------------

    def build(self) -> int:
        """Index every source file from scratch; return the number of chunks."""
        with self._refresh_lock:
            self._refresh_locked(rebuild=True)
            return self._stats.chunks

    def refresh(self) -> Changes:
        """Re-index the files that were added, changed (size or mtime) or removed since the last look."""
        with self._refresh_lock:
            return self._refresh_locked()

    def maybe_refresh(self, min_interval_s: float = 2.0) -> Changes:
        """`refresh()` at most every `min_interval_s`; cheap enough to call on every turn.

        Never waits for a refresh another thread is running: that one will pick up the changes.
        """
        if time.monotonic() - self._last_check < min_interval_s:
            return Changes()
        if not self._refresh_lock.acquire(blocking=False):
            return Changes()
        try:
            if time.monotonic() - self._last_check < min_interval_s:
                return Changes()
            return self._refresh_locked()
        finally:
            self._refresh_lock.release()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _refresh_locked(self, rebuild: bool = False) -> Changes:
        self._last_check = time.monotonic()
        seen = dict(self._scan())
        known = {} if rebuild else self._files
        added = tuple(p for p in seen if p not in known)
        modified = tuple(p for p in seen if p in known and seen[p] != known[p])
        removed = tuple(p for p in self._files if p not in seen)
        parsed = {p: self._chunks_of(p) for p in added + modified}  # read and parse outside the db lock
        if rebuild or added or modified or removed:
            with self._lock:
                self._write(parsed, removed, seen, rebuild)
        self._ready = True
        return Changes(*(tuple(Path(p) for p in group) for group in (added, modified, removed)))

    def _write(
        self, parsed: dict[str, list[TextChunk]], removed: tuple[str, ...], seen: dict[str, _FileState], rebuild: bool
    ) -> None:
        """Apply a refresh in one transaction, so a concurrent retrieve() sees the old or the new index."""
        db = self._db
        db.execute("BEGIN")
        try:
            if rebuild:
                db.execute("DELETE FROM chunks")
                db.execute("DELETE FROM files")
            for path in (*parsed, *removed):
                db.execute("DELETE FROM chunks WHERE source = ?", (path,))
                db.execute("DELETE FROM files WHERE path = ?", (path,))
            for path, chunks in parsed.items():
                db.executemany(
                    "INSERT INTO chunks (heading, body, implied, source) VALUES (?, ?, ?, ?)",
                    [(c.heading_path, c.text, " ".join(implied_words(f"{c.heading_path}. {c.text}")), path)
                     for c in chunks],
                )
                db.execute("INSERT INTO files (path, mtime_ns, size) VALUES (?, ?, ?)", (path, *seen[path]))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if rebuild:
            self._files = {}
        for path in removed:
            self._files.pop(path, None)
        self._files.update((path, seen[path]) for path in parsed)
        self._stats = _Stats(chunks=self._count_chunks())
        self._stats.vocabulary = self._vocabulary()  # at indexing, not on a caller's first turn

    def _scan(self) -> Iterator[tuple[str, _FileState]]:
        """(path, (mtime_ns, size)) of every source file: stat only, no reads."""
        for source in self.sources:
            for path in _files_in(source):
                try:
                    st = path.stat()
                except OSError:
                    continue  # deleted while we looked
                yield str(path), (st.st_mtime_ns, st.st_size)
        for name, text in self._texts.items():
            yield name, (0, len(text))

    def _chunks_of(self, path: str) -> list[TextChunk]:
        if path in self._texts:
            return chunk_fact_list(self._texts[path])
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []  # vanished since the scan; the next refresh drops it
        return chunk_document(text, title=humanise(Path(path).stem))

    def _open_schema(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):  # an index from another version: rebuild it
            self._db.executescript("DROP TABLE IF EXISTS chunks; DROP TABLE IF EXISTS files;")
        self._db.executescript(_SCHEMA)

    def _count_chunks(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    # -- retrieval ------------------------------------------------------------------------------

    def retrieve(self, question: str, k: int = 3, loose: bool = False) -> Retrieval:
        """The (at most) `k` chunks that answer `question`, best first; none if nothing is relevant.
        `loose`: every chunk that matches some of the question counts (for a question whose every
        topic word the documents contain, though no single chunk covers enough of them)."""
        started = time.perf_counter()
        if not self._ready:
            self.refresh()
        with self._lock:
            chunks = self._search(question, k, loose)
        return Retrieval(chunks, 1000.0 * (time.perf_counter() - started), question)

    def __len__(self) -> int:
        """Number of indexed chunks."""
        return self._stats.chunks

    def _search(self, question: str, k: int, loose: bool = False) -> tuple[Chunk, ...]:
        stats = self._stats
        if stats.chunks == 0 or k <= 0:
            return ()
        plan = plan_query(self._words(question), self._known, self._neighbours)
        expression = plan.match_expression()
        if not expression:
            return ()
        rows = self._db.execute(
            f"SELECT rowid, heading, body, source, bm25(chunks, {HEADING_WEIGHT}, 1.0, {IMPLIED_WEIGHT}, 0.0) AS rank "
            "FROM chunks "
            "WHERE chunks MATCH ? ORDER BY rank LIMIT ?",
            (expression, CANDIDATES),
        ).fetchall()
        scorer = _Scorer(plan, {g.name: self._rowids(g) for g in plan.groups}, stats.chunks)
        relevant = [Chunk(body, Path(source), heading, scorer.score(rowid))
                    for rowid, heading, body, source, _ in rows if loose or scorer.relevant(rowid)]
        relevant.sort(key=lambda chunk: -chunk.score)  # stable: bm25 order among equal scores
        return tuple(relevant[:k])

    def unknown_words(self, question: str) -> tuple[str, ...]:
        """The question's content words that nothing indexed contains, even misheard or inflected:
        a topic the business does not mention ("nails" at a hair salon)."""
        if not self._ready:
            self.refresh()
        with self._lock:
            plan = plan_query(self._words(question), self._known, self._neighbours)
            return tuple(g.name for g in plan.content if not self._rowids(g))

    def topic_words(self, question: str) -> tuple[str, ...]:
        """The question's content words, known or not ("and how long does that take?" has none)."""
        if not self._ready:
            self.refresh()
        with self._lock:
            return tuple(g.name for g in plan_query(self._words(question), self._known, self._neighbours).content)

    def as_known(self, question: str) -> str:
        """The question in the facts' own words: STT's splits joined, and each content word the facts do
        not contain replaced by the known word it stands for ("saturn days" -> "saturday", "bark" ->
        "parking"), so what a reply is checked against reads the question as retrieval did."""
        if not self._ready:
            self.refresh()
        with self._lock:
            words = self._words(question)
            groups = {g.name: g for g in plan_query(words, self._known, self._neighbours).content}
            out = []
            for word in words:
                group = groups.get(word)
                if group is not None and not self._known(word):
                    word = next((w for w in group.words[1:] if self._known(w)), word)
                out.append(word)
            return " ".join(out)

    def _words(self, question: str) -> list[str]:
        """The question's words with STT's splits joined (query.py)."""
        return join_split_words(words_of(question), self._known, self._neighbours)

    def _rowids(self, group: TermGroup) -> frozenset[int]:
        """The chunks containing the group (cached until the index changes: callers repeat themselves)."""
        return self._matching(group.match_expression())

    def _known(self, word: str) -> bool:
        """Whether the index has the word itself (stemmed, no prefix: "acceptaetna" is not "accept...")."""
        with self._lock:
            return bool(self._matching('"' + word + '"'))

    def _neighbours(self, word: str) -> tuple[str, ...]:
        """Known words an unknown (misheard, inflected) word may stand for; cached per index version."""
        stats = self._stats
        if word not in stats.neighbours:
            if stats.vocabulary is None:
                stats.vocabulary = self._vocabulary()
            if len(stats.neighbours) >= MAX_CACHED_TERMS:
                stats.neighbours.clear()
            stats.neighbours[word] = neighbours(word, stats.vocabulary)
        return stats.neighbours[word]

    def _vocabulary(self) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute("SELECT heading, body, implied FROM chunks").fetchall()
        return vocabulary_of(w for row in rows for text in row for w in words_of(text)
                             if w not in STOP_WORDS and w not in LIGHT_WORDS)  # content words stand for content

    def _matching(self, expression: str) -> frozenset[int]:
        cache = self._stats.rowids
        if expression not in cache:
            if len(cache) >= MAX_CACHED_TERMS:
                cache.clear()
            rows = self._db.execute("SELECT rowid FROM chunks WHERE chunks MATCH ?", (expression,))
            cache[expression] = frozenset(r[0] for r in rows)
        return cache[expression]


class _Scorer:
    """Decides which candidate chunks really answer the question.

    Each content word weighs its bm25-style idf (rare words say more about the topic); a word the
    knowledge base does not contain at all weighs as much as its rarest word, because an unknown
    topic word ("car" in "do you sell car insurance?") means the question is probably about
    something else; words in more than half the chunks (the business's own name) weigh nothing.
    A chunk is relevant when it holds at least MIN_COVERAGE of the question's content weight, or
    when it matches two distinct things the question asks (a content word and an intent: "how
    much" + "cleaning", even when the caller also said their name). A question with no content
    words ("where are you?") is answered by the chunks matching one of its intents.
    """

    def __init__(self, plan: QueryPlan, rowids: dict[str, frozenset[int]], n_chunks: int) -> None:
        self.rowids = rowids
        self.n = n_chunks
        self.unknown = {g.name for g in plan.content if not rowids[g.name]}
        self.content = self._weights(plan.content, unknown=self._idf(1))
        self.intents = self._weights(plan.intents, floor=INTENT_FLOOR)
        self.light = self._weights(plan.light, factor=LIGHT_WEIGHT)
        self.total_content = sum(self.content.values())
        self.total_known = sum(w for name, w in self.content.items() if name not in self.unknown)
        self.total = self.total_content + sum(self.intents.values()) + sum(self.light.values())

    def _weights(self, groups: tuple[TermGroup, ...], unknown: float = 0.0, factor: float = 1.0,
                 floor: float = 0.0) -> dict[str, float]:
        """idf-based weight per group (at least `floor` if the group occurs at all); groups that weigh
        nothing (too common, or unknown intents) are left out."""
        weights = {g.name: max(floor, factor * self._idf(len(self.rowids[g.name]))) if self.rowids[g.name]
                   else unknown for g in groups}
        return {name: weight for name, weight in weights.items() if weight > 0}

    def _idf(self, df: int) -> float:
        """bm25's idf, but 0 for words common enough to say nothing about a chunk's topic."""
        if self.n >= MIN_CHUNKS_FOR_COMMON and df > COMMON_SHARE * self.n:
            return 0.0
        return math.log(1.0 + (self.n - df + 0.5) / (df + 0.5))

    def _matched(self, weights: dict[str, float], rowid: int) -> list[str]:
        return [name for name in weights if rowid in self.rowids[name]]

    def relevant(self, rowid: int) -> bool:
        content = self._matched(self.content, rowid)
        intents = self._matched(self.intents, rowid)
        if not self.content:
            return bool(intents)
        if sum(self.content[name] for name in content) >= MIN_COVERAGE * self.total_content:
            return True
        # Unknown words may be noise (the caller's name): they may be missing if the chunk has most of
        # the known ones and answers two things asked. A missing known word means another topic.
        known = sum(self.content[name] for name in content if name not in self.unknown)
        return len(content) + len(intents) >= 2 and known >= MIN_COVERAGE * self.total_known

    def score(self, rowid: int) -> float:
        if self.total <= 0:
            return 0.0
        matched = sum(self.content[n] for n in self._matched(self.content, rowid))
        matched += sum(self.intents[n] for n in self._matched(self.intents, rowid))
        matched += sum(self.light[n] for n in self._matched(self.light, rowid))
        return matched / self.total


def _checked_source(path: Path) -> Path:
    if not path.exists():
        raise KnowledgeError(f"knowledge source does not exist: {path}")
    if path.is_file() and path.suffix.lower() not in SUFFIXES:
        raise KnowledgeError(f"knowledge source {path} is not a Markdown or text file ({', '.join(sorted(SUFFIXES))})")
    return path.resolve()


def _files_in(source: Path) -> Iterator[Path]:
    """The Markdown and text files of a source: itself, or its non-hidden files, recursively."""
    if source.is_file():
        yield source
        return
    if not source.is_dir():
        return  # removed while running: its files count as deleted, the agent keeps going
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in SUFFIXES:
                yield Path(root) / name
