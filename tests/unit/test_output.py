"""Output truncation invariants: never over budget, never splits a character, head and tail kept."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.output import OutputBuffer, marker_text, prefix_within, suffix_within, utf8_len
from engine.models import DisplayOutput, StreamOutput, TruncationMarker

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))


@given(texts, st.integers(0, 200))
def test_prefix_and_suffix_fit_and_are_maximal(text: str, budget: int) -> None:
    head, tail = prefix_within(text, budget), suffix_within(text, budget)
    assert text.startswith(head) and text.endswith(tail)
    assert utf8_len(head) <= budget and utf8_len(tail) <= budget
    if len(head) < len(text):
        assert utf8_len(text[: len(head) + 1]) > budget
    if len(tail) < len(text):
        assert utf8_len(text[len(text) - len(tail) - 1 :]) > budget


chunks = st.lists(
    st.tuples(st.sampled_from(["stdout", "stderr"]), st.binary(max_size=300)), max_size=30
)


@settings(max_examples=300)
@given(chunks, st.integers(1024, 4096))
def test_buffer_never_exceeds_budget_and_keeps_head_and_tail(
    pieces: list[tuple[str, bytes]], budget: int
) -> None:
    buffer = OutputBuffer(budget)
    for name, data in pieces:
        buffer.feed(name, data)  # type: ignore[arg-type]
    buffer.flush_decoders()
    full = {
        name: b"".join(d for n, d in pieces if n == name).decode("utf-8", "replace")
        for name in ("stdout", "stderr")
    }
    items = buffer.items()
    kept = sum(utf8_len(i.text) for i in items if isinstance(i, StreamOutput))
    assert kept <= budget
    total = sum(utf8_len(t) for t in full.values())
    assert kept + buffer.omitted == total
    assert buffer.truncated == (total > budget)
    for name in ("stdout", "stderr"):
        text = buffer.text(name)  # type: ignore[arg-type]
        head, _, _tail = text.partition(marker_text(0)[:6])  # "\n[... "
        assert full[name].startswith(head)
        if buffer.truncated and marker_text(0)[:6] in text:
            assert full[name].endswith(text.rsplit(" omitted ...]\n", 1)[1])
        else:
            assert text == full[name]
    markers = [i for i in items if isinstance(i, TruncationMarker)]
    assert len(markers) == (1 if buffer.truncated else 0)


def test_text_split_across_chunks_is_decoded_whole() -> None:
    buffer = OutputBuffer(1024)
    encoded = "héllo wörld ✓".encode()
    for i in range(len(encoded)):
        buffer.feed("stdout", encoded[i : i + 1])
    assert buffer.text("stdout") == "héllo wörld ✓"


def test_display_items_survive_truncation_in_order() -> None:
    buffer = OutputBuffer(1024)
    buffer.add_text("stdout", "a" * 600)
    buffer.add_display(DisplayOutput(data={"text/plain": "picture"}))
    buffer.add_text("stdout", "b" * 5000)
    kinds = [type(i).__name__ for i in buffer.items()]
    assert kinds == ["StreamOutput", "TruncationMarker", "DisplayOutput", "StreamOutput"]


def test_live_callback_sees_head_and_displays_only() -> None:
    seen: list[object] = []
    buffer = OutputBuffer(1024, seen.append)
    buffer.add_text("stdout", "x" * 10_000)
    assert sum(len(i.text) for i in seen if isinstance(i, StreamOutput)) == 512


def test_display_items_beyond_their_budget_are_dropped_and_counted() -> None:
    buffer = OutputBuffer(1024, display_budget=2500)
    for _ in range(5):
        buffer.add_display(DisplayOutput(data={"image/png": "x" * 1000}))
    assert len([i for i in buffer.items() if isinstance(i, DisplayOutput)]) == 2
    assert buffer.truncated and buffer.omitted == 3000
