"""Agent protocol frames round-trip across arbitrary chunk boundaries; bad input is rejected."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.agent.protocol import FrameDecoder, FrameError, encode_frame

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=10,
)
messages = st.dictionaries(st.text(), json_values, max_size=5).map(lambda d: {**d, "type": "x"})


@given(st.lists(messages, min_size=1, max_size=5), st.data())
def test_frames_survive_any_chunking(frames: list[dict[str, object]], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = FrameDecoder()
    decoded: list[dict[str, object]] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        decoded += decoder.feed(stream[start:end])
    assert decoded == frames
    assert decoder.pending == 0


@given(st.text())
def test_any_text_including_surrogates_round_trips(text: str) -> None:
    frame = {"type": "stream", "data": text + "\ud800\x00"}
    assert FrameDecoder().feed(encode_frame(frame)) == [frame]


def test_oversized_frame_is_rejected_before_buffering() -> None:
    decoder = FrameDecoder(max_frame=100)
    with pytest.raises(FrameError, match="exceeds"):
        decoder.feed(struct.pack(">I", 101))


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"no_type": 1}', b"\xff\xfe"])
def test_malformed_frames_are_rejected(body: bytes) -> None:
    with pytest.raises(FrameError):
        FrameDecoder().feed(struct.pack(">I", len(body)) + body)
