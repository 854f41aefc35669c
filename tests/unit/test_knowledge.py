"""gateway.knowledge: chunking, retrieval quality and safety, refresh, prompt formatting."""

from __future__ import annotations

import os
import statistics
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.knowledge import Chunk, KnowledgeBase, KnowledgeError, Retrieval, format_facts
from gateway.knowledge.chunking import MAX_WORDS, chunk_document
from gateway.knowledge.query import join_split_words, plan_query, words_of

HARBOR = Path(__file__).resolve().parents[2] / "configs" / "knowledge" / "harbor-dental.md"


@pytest.fixture(scope="module")
def harbor() -> KnowledgeBase:
    kb = KnowledgeBase([HARBOR])
    kb.build()
    return kb


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def bump_mtime(path: Path) -> None:
    """Make an edit visible to a stat-based check even on a coarse-mtime file system."""
    st_ = path.stat()
    os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 2_000_000_000))


# -- chunking ---------------------------------------------------------------------------------------


def test_chunks_keep_heading_path_and_merge_tiny_paragraphs_within_a_section() -> None:
    doc = (
        "# Harbor Dental\n\nA family clinic.\n\n"
        "## Prices\n\n- Cleaning: 90 dollars\n- Whitening: 250 dollars\n\nPrices include a check-up.\n\n"
        "### Children\n\nKids under 12 pay half.\n\n"
        "## Hours\n\nMonday to Friday.\n"
    )
    chunks = chunk_document(doc)
    assert [(c.heading_path, c.text) for c in chunks] == [
        ("Harbor Dental", "A family clinic."),
        ("Harbor Dental > Prices", "Cleaning: 90 dollars. Whitening: 250 dollars. Prices include a check-up."),
        ("Harbor Dental > Prices > Children", "Kids under 12 pay half."),
        ("Harbor Dental > Hours", "Monday to Friday."),
    ]


def test_paragraphs_of_fact_size_stay_separate() -> None:
    first = " ".join(["Cleanings"] + ["remove plaque and tartar gently"] * 6) + "."
    second = " ".join(["Whitening"] + ["brightens teeth by several shades"] * 6) + "."
    chunks = chunk_document(f"## Treatments\n\n{first}\n\n{second}\n")
    assert [c.text for c in chunks] == [first, second]


def test_long_paragraph_is_split_at_sentences_not_after_abbreviations() -> None:
    sentences = [f"Dr. Smith explains point number {i} to every new patient in plain words." for i in range(20)]
    chunks = chunk_document("## Dentists\n\n" + " ".join(sentences))
    assert len(chunks) > 1
    assert all(len(c.text.split()) <= MAX_WORDS for c in chunks)
    assert all(c.text.startswith("Dr. Smith") and c.text.endswith("words.") for c in chunks)
    assert " ".join(c.text for c in chunks) == " ".join(sentences)


def test_setext_headings_tables_and_inline_markup() -> None:
    doc = (
        "Prices\n======\n\n| Treatment | Price |\n|---|---|\n| **Cleaning** | 90 dollars |\n\n"
        "Contact\n-------\n\nSee [our site](https://example.com) or call `555 0100`.\n"
    )
    assert [(c.heading_path, c.text) for c in chunk_document(doc)] == [
        ("Prices", "Cleaning: 90 dollars."),
        ("Prices > Contact", "See our site or call 555 0100."),  # "---" underlines a level-2 heading
    ]


def test_text_without_headings_takes_the_title() -> None:
    assert chunk_document("Free parking behind the building.", title="Parking")[0].heading_path == "Parking"


# -- retrieval quality ------------------------------------------------------------------------------


def test_price_question_finds_the_price_chunk_first(harbor: KnowledgeBase) -> None:
    result = harbor.retrieve("How much does a cleaning cost?")
    assert result.found
    best = result.chunks[0]
    assert best.heading == "Harbor Dental > Prices"
    assert "Cleaning: 90 dollars" in best.text
    assert best.source == HARBOR.resolve()
    assert 0 < best.score <= 1
    assert result.elapsed_ms > 0


@pytest.mark.parametrize(
    ("question", "heading", "fact"),
    [
        ("What are your opening hours?", "Opening hours", "8 am to 5 pm"),
        ("Are you open on Saturday?", "Opening hours", "closed on weekends"),
        ("Where is your office?", "Address and parking", "12 Harbor Street"),
        ("Is there parking near the office?", "Address and parking", "Free parking"),
        ("Which dentists work there?", "Dentists", "Dr. Patel"),
        ("Is Doctor Patel a woman or a man?", "Dentists", "She is our orthodontist"),
        ("Do you take Delta Dental?", "Insurance", "Cigna"),
        ("Can I pay with a credit card?", "Payment", "cash"),
        ("I have a toothache, it is an emergency", "Emergencies", "same-day"),
        ("How late can I cancel?", "Cancellation policy", "24 hours"),
        ("Do you take new patients?", "New patients", "welcome"),
        ("Hi, this is John Miller, I wanted to ask how much a whitening costs", "Prices", "250 dollars"),
    ],
)
def test_typical_questions(harbor: KnowledgeBase, question: str, heading: str, fact: str) -> None:
    best = harbor.retrieve(question).chunks[0]
    assert best.heading.endswith(heading)
    assert fact in best.text


def test_stemming_matches_plural_and_other_forms(harbor: KnowledgeBase) -> None:
    assert "90 dollars" in harbor.retrieve("what do cleanings cost").chunks[0].text
    assert "Cigna" in harbor.retrieve("am I insured with cigna").chunks[0].text
    assert harbor.retrieve("cancelling").chunks[0].heading.endswith("Cancellation policy")


@pytest.mark.parametrize(
    "question",
    [
        "Do you sell car insurance?",
        "Can I order a pizza?",
        "What's the weather like tomorrow?",
        "Do you have Wi-Fi?",
        "Do you do implants?",
        "What time does the car wash close?",
        "Thank you, that is all.",
        "um",
        "",
    ],
)
def test_irrelevant_questions_find_nothing(harbor: KnowledgeBase, question: str) -> None:
    result = harbor.retrieve(question)
    assert not result.found
    assert result.chunks == ()


@pytest.mark.parametrize(
    ("question", "fact"),
    [
        ("how much is a clean ing", "90 dollars"),  # a word split in two
        ("what are your opening ours", "8 am to 5 pm"),  # "hours" misheard
        ("is there an orthodon", "orthodontist"),  # a word cut off: prefix match
        ("how much is the whiten ing", "250 dollars"),
    ],
)
def test_speech_to_text_errors(harbor: KnowledgeBase, question: str, fact: str) -> None:
    result = harbor.retrieve(question)
    assert result.found
    assert fact in result.chunks[0].text


def test_split_words_are_joined_only_when_the_joined_word_is_known() -> None:
    known = {"clean", "cleaning", "open"}.__contains__
    assert join_split_words(["a", "clean", "ing"], known) == ["a", "cleaning"]
    assert join_split_words(["open", "clean"], known) == ["open", "clean"]  # both known: leave them


def test_query_plan_drops_filler_and_keeps_topic_words() -> None:
    plan = plan_query(words_of("Um, could you please tell me how much a cleaning costs?"))
    assert [g.name for g in plan.content] == ["cleaning"]
    assert [g.name for g in plan.intents] == ["price"]


def test_k_limits_the_number_of_chunks(harbor: KnowledgeBase) -> None:
    assert len(harbor.retrieve("what are your opening hours", k=1).chunks) == 1
    assert harbor.retrieve("what are your opening hours", k=0).chunks == ()


def test_retrieval_is_fast(harbor: KnowledgeBase) -> None:
    questions = ["How much does a cleaning cost?", "Where do I park?", "Do you sell car insurance?"] * 20
    times = [harbor.retrieve(q).elapsed_ms for q in questions]
    assert statistics.median(times) < 15.0


# -- safety: user text never reaches MATCH as syntax ------------------------------------------------


@pytest.mark.parametrize(
    "question",
    [
        '"',
        'cleaning "price',
        "cleaning AND OR NOT",
        "AND",
        "NOT cleaning",
        "*",
        "clean*",
        "-cleaning",
        "cleaning - whitening",
        "NEAR(cleaning price",
        "NEAR(cleaning, 2)",
        "heading: prices",
        "{heading body}: cleaning",
        "^cleaning",
        "cleaning + whitening",
        "(((",
        "'; DROP TABLE chunks; --",
        "__init__",
        "_",
        "Zahnreinigung für Kinder? Größe 😀 ½ ² ٣ e\u0301clair ﬁ",
        "\x00cleaning",
        "clean" * 2000,
        "cleaning " * 1000,
    ],
)
def test_fts_syntax_in_questions_never_raises(harbor: KnowledgeBase, question: str) -> None:
    assert isinstance(harbor.retrieve(question), Retrieval)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_any_text_is_a_safe_question(harbor: KnowledgeBase, question: str) -> None:
    result = harbor.retrieve(question)
    assert len(result.chunks) <= 3


# -- sources and refresh ----------------------------------------------------------------------------


def test_missing_source_raises_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "faq.md"
    with pytest.raises(KnowledgeError, match="nope/faq.md") as error:
        KnowledgeBase([missing])
    assert isinstance(error.value, ValueError)


def test_unsupported_file_raises(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match=r"prices\.pdf"):
        KnowledgeBase([write(tmp_path / "prices.pdf", "%PDF")])


def test_empty_folder_finds_nothing(tmp_path: Path) -> None:
    kb = KnowledgeBase([tmp_path])
    assert kb.build() == 0
    assert not kb.retrieve("How much does a cleaning cost?").found
    assert format_facts(kb.retrieve("anything")) == ""


def test_folders_are_searched_recursively_skipping_hidden_and_other_files(tmp_path: Path) -> None:
    write(tmp_path / "a" / "b" / "parking.txt", "Free parking behind the building.")
    write(tmp_path / "hours.markdown", "# Hours\n\nOpen Monday to Friday.")
    write(tmp_path / ".drafts" / "secret.md", "Secret discount for parking.")
    write(tmp_path / ".hidden.md", "Hidden parking garage.")
    write(tmp_path / "notes.docx", "parking")
    kb = KnowledgeBase([tmp_path])
    kb.build()
    assert {c.source.name for c in kb.retrieve("parking").chunks} == {"parking.txt"}
    assert kb.retrieve("parking").chunks[0].heading == "Parking"  # from the file name


def test_refresh_picks_up_edited_added_and_deleted_files(tmp_path: Path) -> None:
    prices = write(tmp_path / "prices.md", "# Prices\n\nCleaning: 90 dollars.\n")
    hours = write(tmp_path / "hours.md", "# Hours\n\nOpen Monday to Friday, 8 am to 5 pm.\n")
    kb = KnowledgeBase([tmp_path])
    kb.build()
    assert "90 dollars" in kb.retrieve("how much is a cleaning").chunks[0].text
    assert not kb.refresh()  # nothing changed

    write(prices, "# Prices\n\nCleaning: 95 dollars from June.\n")
    bump_mtime(prices)
    hours.unlink()
    write(tmp_path / "sub" / "insurance.md", "# Insurance\n\nWe accept Cigna.\n")
    changes = kb.refresh()

    assert changes.modified == (prices.resolve(),)
    assert changes.removed == (hours.resolve(),)
    assert [p.name for p in changes.added] == ["insurance.md"]
    assert "95 dollars" in kb.retrieve("how much is a cleaning").chunks[0].text
    assert not kb.retrieve("when are you open").found
    assert kb.retrieve("do you take cigna").found


def test_maybe_refresh_looks_at_most_every_interval(tmp_path: Path) -> None:
    prices = write(tmp_path / "prices.md", "# Prices\n\nCleaning: 90 dollars.\n")
    kb = KnowledgeBase([tmp_path])
    assert kb.maybe_refresh()  # the first call indexes
    write(prices, "# Prices\n\nCleaning: 99 dollars.\n")
    bump_mtime(prices)
    assert not kb.maybe_refresh(min_interval_s=60.0)  # too soon: not even a stat
    assert "90 dollars" in kb.retrieve("cleaning price").chunks[0].text
    assert kb.maybe_refresh(min_interval_s=0.0).modified == (prices.resolve(),)
    assert "99 dollars" in kb.retrieve("cleaning price").chunks[0].text


def test_a_removed_source_folder_empties_the_index_without_raising(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    faq = write(folder / "faq.md", "Free parking behind the building.")
    kb = KnowledgeBase([folder])
    kb.build()
    faq.unlink()
    folder.rmdir()
    assert kb.refresh().removed == (faq.resolve(),)
    assert len(kb) == 0


def test_an_index_file_is_reused_and_only_changes_are_reindexed(tmp_path: Path) -> None:
    write(tmp_path / "kb" / "prices.md", "# Prices\n\nCleaning: 90 dollars.\n")
    db = tmp_path / "index.sqlite"
    with KnowledgeBase([tmp_path / "kb"], db) as kb:
        kb.build()
    with KnowledgeBase([tmp_path / "kb"], db) as again:
        assert not again.refresh()
        assert "90 dollars" in again.retrieve("how much is a cleaning").chunks[0].text


def test_concurrent_retrieve_and_refresh(tmp_path: Path) -> None:
    prices = write(tmp_path / "prices.md", "# Prices\n\nCleaning: 90 dollars.\n")
    kb = KnowledgeBase([tmp_path])
    kb.build()
    errors: list[BaseException] = []
    stop = threading.Event()

    def ask() -> None:
        try:
            while not stop.is_set():
                result = kb.retrieve("how much is a cleaning")
                assert result.found and "dollars" in result.chunks[0].text
                kb.maybe_refresh(min_interval_s=0.0)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for i in range(30):  # replaced atomically, as editors do: a half-written file has no price
        write(tmp_path / "prices.tmp", f"# Prices\n\nCleaning: {100 + i} dollars.\n")
        os.replace(tmp_path / "prices.tmp", prices)
        bump_mtime(prices)
        kb.refresh()
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert "129 dollars" in kb.retrieve("how much is a cleaning").chunks[0].text


# -- prompt formatting ------------------------------------------------------------------------------


def test_format_facts_renders_bullets_best_first(harbor: KnowledgeBase) -> None:
    facts = format_facts(harbor.retrieve("How much does a cleaning cost?"))
    lines = facts.splitlines()
    assert lines[0] == "- Harbor Dental > Prices: Cleaning: 90 dollars. Whitening: 250 dollars."
    assert all(line.startswith("- ") for line in lines)


def test_format_facts_keeps_the_word_budget_and_drops_repeats() -> None:
    source = Path("faq.md")
    chunks = (
        Chunk("We are open Monday to Friday. Parking is free.", source, "Hours", 1.0),
        Chunk("We are open Monday to Friday. Saturday by appointment.", source, "Weekend", 0.9),
        Chunk(" ".join(["word"] * 200) + ".", source, "Long", 0.5),
    )
    facts = format_facts(Retrieval(chunks, 0.1))
    assert facts.splitlines()[:2] == [
        "- Hours: We are open Monday to Friday. Parking is free.",
        "- Weekend: Saturday by appointment.",
    ]
    for budget in (5, 12, 30, 120):
        assert len(format_facts(Retrieval(chunks, 0.1), max_words=budget).split()) <= budget
    only_first = format_facts(Retrieval(chunks, 0.1), max_words=12)
    assert only_first == "- Hours: We are open Monday to Friday. Parking is free."


def test_format_facts_cuts_a_first_fact_that_is_too_long() -> None:
    chunk = Chunk(" ".join(f"w{i}" for i in range(50)) + ".", Path("a.md"), "Long", 1.0)
    facts = format_facts(Retrieval((chunk,), 0.1), max_words=10)
    assert facts.startswith("- Long: w0 w1")
    assert facts.endswith("...")
    assert len(facts.split()) <= 10


def test_format_facts_of_nothing_is_empty() -> None:
    assert format_facts(Retrieval((), 0.1)) == ""
