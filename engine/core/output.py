"""Output shaping: what a cell printed, kept within a byte budget.

The host never holds more than the budget plus one read chunk, whatever the cell prints: text beyond
the first half of the budget goes to a tail window that drops its oldest bytes, and a marker records
how much was cut between the two. Budgets count UTF-8 bytes of the decoded text and cuts fall on
character boundaries, so a kept text is always valid and never over budget.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from itertools import groupby
from typing import Literal

from engine.models import DisplayOutput, OutputItem, ResultOutput, StreamOutput, TruncationMarker

StreamName = Literal["stdout", "stderr"]
_UTF8 = codecs.getincrementaldecoder("utf-8")
ItemCallback = Callable[[OutputItem], None]


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def prefix_within(text: str, budget: int) -> str:
    """Longest prefix of `text` whose UTF-8 encoding fits in `budget` bytes."""
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= budget:
        return text
    # Step back over continuation bytes so the cut falls on a character boundary.
    cut = budget
    while cut > 0 and (encoded[cut] & 0xC0) == 0x80:
        cut -= 1
    return encoded[:cut].decode("utf-8", "surrogatepass")


def suffix_within(text: str, budget: int) -> str:
    """Longest suffix of `text` whose UTF-8 encoding fits in `budget` bytes."""
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= budget:
        return text
    start = len(encoded) - budget
    while start < len(encoded) and (encoded[start] & 0xC0) == 0x80:
        start += 1
    return encoded[start:].decode("utf-8", "surrogatepass")


# Rich output (images) may take this many times the stream budget: a plot is worth more than logs.
DISPLAY_BUDGET_FACTOR = 8


def marker_text(omitted: int) -> str:
    return f"\n[... {omitted} bytes of output omitted ...]\n"


# Below this memory limit a sandbox's agent runs without its relay process (a few MiB that such a
# sandbox cannot spare): output printed right before a hard crash may then be lost.
RELAY_MIN_MEMORY_MB = 48


def relay_env(memory_mb: int) -> dict[str, str]:
    return {} if memory_mb >= RELAY_MIN_MEMORY_MB else {"LCI_AGENT_RELAY": "0"}


def frame_limit(output_bytes: int) -> int:
    """The largest frame a sandbox may send for a session with this output budget: one display
    at its budget plus texts at theirs. The agent fits its frames under it; a bigger one is a
    protocol violation."""
    return max(1 << 20, DISPLAY_BUDGET_FACTOR * output_bytes + 2 * output_bytes + (64 << 10))


def clip_text(text: str, budget: int) -> tuple[str, int]:
    """`text` within `budget` UTF-8 bytes, head and tail kept around a marker; and the bytes cut."""
    size = utf8_len(text)
    if size <= budget:
        return text, 0
    half = max(budget - 64, 0) // 2
    head, tail = prefix_within(text, half), suffix_within(text, half)
    omitted = size - utf8_len(head) - utf8_len(tail)
    return head + marker_text(omitted) + tail, omitted


class OutputBuffer:
    """Collects one execution's stream chunks and display items in order, within `budget` bytes of
    stream text. `on_item` sees head items live (while they fit) and every display item."""

    def __init__(
        self, budget: int, on_item: ItemCallback | None = None, display_budget: int | None = None
    ) -> None:
        self._display_left = (
            DISPLAY_BUDGET_FACTOR * budget if display_budget is None else display_budget
        )
        self._text_budget = budget
        self._head_budget = budget // 2
        self._tail_budget = budget - self._head_budget
        self._head: list[OutputItem] = []
        self._tail: list[OutputItem] = []
        self._head_used = 0
        self._tail_used = 0
        self._in_tail = False
        self.omitted = 0
        self._omitted_by: dict[StreamName, int] = {"stdout": 0, "stderr": 0}
        self._decoders: dict[StreamName, codecs.IncrementalDecoder] = {}  # made on first use
        self._on_item = on_item

    # -- input ---------------------------------------------------------------------------------
    def feed(self, name: StreamName, data: bytes, final: bool = False) -> None:
        decoder = self._decoders.get(name)
        if decoder is None:
            decoder = self._decoders[name] = _UTF8(errors="replace")
        text = decoder.decode(data, final)
        if text:
            self.add_text(name, text)

    def add_text(self, name: StreamName, text: str) -> None:
        if not self._in_tail:
            room = self._head_budget - self._head_used
            kept = prefix_within(text, room)
            if kept:
                self._head_used += utf8_len(kept)
                item = StreamOutput(name=name, text=kept)
                self._head.append(item)  # merged once, in items(): appending stays linear
                self._notify(item)
            if len(kept) == len(text):
                return
            self._in_tail = True
            text = text[len(kept) :]
        # Tail chunks stay separate until the end, so trimming touches one chunk, not the window.
        self._tail.append(StreamOutput(name=name, text=text))
        self._tail_used += utf8_len(text)
        self._trim_tail()

    def add_display(self, item: DisplayOutput | ResultOutput) -> None:
        """Texts of the item are cut to the stream budget; an item over what is left of the
        display budget is dropped whole (half an image is no image), but a result keeps its
        plain text."""
        data, cut = {}, 0
        for mime, raw in item.data.items():
            value = raw
            if len(raw) * 4 > self._text_budget and (
                not mime.startswith("image/") or mime == "image/svg+xml"
            ):
                value, lost = clip_text(raw, self._text_budget)
                cut += lost
            data[mime] = value
        size = sum(len(value) for value in data.values())
        if size > self._display_left and isinstance(item, ResultOutput):
            plain = data.get("text/plain", "")
            cut += size - len(plain)
            data, size = {"text/plain": plain}, len(plain)
        if size > self._display_left:
            self.omitted += size + cut
            return
        if cut:
            self.omitted += cut
            item = type(item)(data=data, metadata=item.metadata)
        self._display_left -= size
        (self._tail if self._in_tail else self._head).append(item)
        self._notify(item)

    def flush_decoders(self) -> None:
        for name in list(self._decoders):
            self.feed(name, b"", final=True)

    # -- output --------------------------------------------------------------------------------
    @property
    def truncated(self) -> bool:
        return self.omitted > 0

    def items(self) -> list[OutputItem]:
        tail = _merged(self._tail)
        if not self.omitted:
            return _merged(self._head + tail)
        return [*_merged(self._head), TruncationMarker(omitted_bytes=self.omitted), *tail]

    def text(self, name: StreamName) -> str:
        """The kept text of one stream, with a marker where that stream lost bytes."""
        if name not in self._decoders:
            return ""  # nothing was ever written to it
        head = "".join(i.text for i in self._head if isinstance(i, StreamOutput) and i.name == name)
        tail = "".join(i.text for i in self._tail if isinstance(i, StreamOutput) and i.name == name)
        cut = self._omitted_by[name]
        return head + (marker_text(cut) if cut else "") + tail

    # -- internals -----------------------------------------------------------------------------
    def _notify(self, item: OutputItem) -> None:
        if self._on_item is not None:
            self._on_item(item)

    def _trim_tail(self) -> None:
        while self._tail_used > self._tail_budget:
            index = next(i for i, item in enumerate(self._tail) if isinstance(item, StreamOutput))
            item = self._tail[index]
            assert isinstance(item, StreamOutput)
            excess = self._tail_used - self._tail_budget
            size = utf8_len(item.text)
            if size <= excess:
                del self._tail[index]
                dropped = size
            else:
                kept = suffix_within(item.text, size - excess)
                self._tail[index] = StreamOutput(name=item.name, text=kept)
                dropped = size - utf8_len(kept)
            self._tail_used -= dropped
            self.omitted += dropped
            self._omitted_by[item.name] += dropped


def _merged(items: list[OutputItem]) -> list[OutputItem]:
    """Adjacent chunks of the same stream joined into one item."""
    result: list[OutputItem] = []
    for key, group in groupby(items, key=lambda i: i.name if isinstance(i, StreamOutput) else None):
        if key is None:
            result.extend(group)
        else:
            text = "".join(i.text for i in group if isinstance(i, StreamOutput))
            result.append(StreamOutput(name=key, text=text))
    return result
