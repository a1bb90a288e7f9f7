"""SSE decoding and reconnect decisions, without any network."""

from __future__ import annotations

import json

import pytest

from arkor.sdk._events import (
    EventFollower,
    JobEvent,
    ReconnectPolicy,
    ServerSentEvent,
    SseDecoder,
)


def frame(event_id: int, kind: str, **data: object) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"


def test_frames_dispatch_on_blank_lines_only() -> None:
    decoder = SseDecoder()
    assert decoder.feed("id: 1\nevent: training.log\ndata: {\"step\"") == []
    assert decoder.feed(": 1}\n") == []
    assert decoder.feed("\n") == [ServerSentEvent("training.log", '{"step": 1}', "1")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    [event] = SseDecoder().feed('data: {"a":\ndata: 1,\ndata:"b": 2}\n\n')
    assert event.data == '{"a":\n1,\n"b": 2}'
    assert json.loads(event.data) == {"a": 1, "b": 2}


def test_crlf_and_cr_line_endings_even_split_across_chunks() -> None:
    decoder = SseDecoder()
    assert decoder.feed("data: x\r") == []
    assert decoder.feed("\n\r") == []  # the \r\n ends the line, the lone \r the frame
    assert decoder.feed("data: y\r\r") == [ServerSentEvent("", "x", None)]
    assert decoder.feed("\n") == [ServerSentEvent("", "y", None)]


def test_comments_unknown_fields_and_empty_frames_are_ignored() -> None:
    decoder = SseDecoder()
    text = ": keep-alive\n\nretry: 10\nfoo: bar\n\nevent: lonely\n\ndata: z\n\n"
    assert decoder.feed(text) == [ServerSentEvent("", "z", None)]


def test_id_persists_and_a_value_without_a_space_is_kept_whole() -> None:
    decoder = SseDecoder()
    frames = decoder.feed("id:7\ndata:a\n\ndata:  b\n\n")
    assert frames == [ServerSentEvent("", "a", "7"), ServerSentEvent("", " b", "7")]
    assert decoder.last_id == "7"
    decoder.feed("id: bad\x00id\n\n")  # an id with NUL is ignored, as the SSE spec says
    assert decoder.last_id == "7"


def test_follower_types_events_and_skips_garbage_and_pings() -> None:
    follower = EventFollower()
    assert follower.on_open(200) == "read"
    text = (frame(1, "training.started") + "id: 2\ndata: {not json\n\n"
            + "id: 3\ndata: [1, 2]\n\n" + frame(4, "ping")
            + "id: 5\ndata: {\"type\": \"training.log\", \"step\": 1}\n\n")
    events = follower.feed(text)
    assert [(e.id, e.type) for e in events] == [("1", "training.started"), ("5", "training.log")]
    assert events[1].data["step"] == 1
    assert follower.last_event_id == "5"
    assert follower.headers()["Last-Event-ID"] == "5"


def test_end_stops_the_follower() -> None:
    follower = EventFollower()
    follower.on_open(200)
    events = follower.feed(frame(8, "training.completed") + frame(8, "end") + frame(9, "x"))
    assert [e.type for e in events] == ["training.completed", "end"]
    assert follower.done
    assert follower.on_close() is None


def test_resume_header_is_sent_from_the_given_id() -> None:
    assert "Last-Event-ID" not in EventFollower().headers()
    assert EventFollower(last_event_id=3).headers()["Last-Event-ID"] == "3"
    assert EventFollower().headers()["Accept"] == "text/event-stream"


@pytest.mark.parametrize(("status", "action"), [
    (200, "read"), (401, "raise"), (403, "raise"), (404, "raise"), (410, "raise"),
    (426, "raise"), (400, "raise"), (408, "retry"), (429, "retry"), (500, "retry"),
    (503, "retry"),
])
def test_open_status_decides(status: int, action: str) -> None:
    assert EventFollower().on_open(status) == action


def fixed(value: float) -> ReconnectPolicy:
    return ReconnectPolicy(random=lambda: value)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    middle = fixed(0.5)
    assert [middle.backoff(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert fixed(0.0).backoff(2) == pytest.approx(3.0)  # -25 %
    assert fixed(1.0).backoff(2) == pytest.approx(5.0)  # +25 %
    assert fixed(1.0).backoff(5) == pytest.approx(40.0)
    assert fixed(0.0).backoff(6) == pytest.approx(48.0)
    assert fixed(1.0).backoff(6) == 60.0
    assert fixed(0.5).backoff(10_000) == 60.0


def test_errors_back_off_until_an_event_arrives() -> None:
    follower = EventFollower(policy=fixed(0.5))
    assert [follower.on_error() for _ in range(3)] == [1.0, 2.0, 4.0]
    follower.on_open(200)
    assert follower.on_close() == 8.0  # an empty stream is a failure too
    follower.on_open(200)
    follower.feed(frame(1, "training.started"))
    assert follower.on_close() == 1.0  # progress made: reconnect after 1 s, no penalty
    assert follower.on_error() == 1.0  # and the backoff starts over


def test_without_reconnect_nothing_is_retried() -> None:
    follower = EventFollower(reconnect=False)
    follower.on_open(200)
    follower.feed(frame(1, "training.started"))
    assert follower.on_close() is None
    assert follower.on_error() is None


def test_max_attempts_ends_the_retries() -> None:
    follower = EventFollower(policy=ReconnectPolicy(max_attempts=2, random=lambda: 0.5))
    assert follower.on_error() == 1.0
    assert follower.on_error() == 2.0
    assert follower.on_error() is None


def test_a_new_connection_drops_a_half_frame() -> None:
    follower = EventFollower()
    follower.on_open(200)
    assert follower.feed("id: 4\nevent: training.log\ndata: {\"step\": 9") == []
    assert follower.last_event_id is None  # so a resume asks for event 4 again
    follower.on_open(200)
    assert follower.feed(frame(5, "training.log", step=2)) == [
        JobEvent("5", "training.log", {"type": "training.log", "step": 2})
    ]
