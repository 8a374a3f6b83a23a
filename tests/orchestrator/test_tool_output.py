"""How executions are turned into the text fed back to the model (docs/conformance/outputs.md)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.models import (
    DisplayOutput,
    ErrorInfo,
    Execution,
    Limits,
    Outcome,
    ResultOutput,
    StreamOutput,
    TruncationMarker,
)
from engine.orchestrator.chart_text import chart_line
from engine.orchestrator.tool import clip, render_execution

# A 1x1 PNG.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAX+XDSwAAAABJRU5ErkJggg=="


def execution(**kw: Any) -> Execution:
    return Execution(id="e", session_id="s", limits=Limits(timeout_s=3), **kw)


def text_of(ex: Execution, budget: int = 10_000, **kw: Any) -> str:
    return render_execution(ex, budget_bytes=budget, **kw)[0].text


def test_qwen_agent_format() -> None:
    ex = execution(
        outcome=Outcome.ERROR,
        outputs=[StreamOutput(name="stdout", text="hi\n")],
        error=ErrorInfo(
            name="ZeroDivisionError",
            value="division by zero",
            traceback="\x1b[31mZeroDivisionError\x1b[0m: division by zero",
        ),
    )
    assert text_of(ex) == (
        "stdout:\n\n```\nhi\n```\n\nerror:\n\n```\nZeroDivisionError: division by zero\n```"
        "\n\nThe code failed: correct it and call the tool again with the corrected code."
    )


def test_no_output() -> None:
    assert text_of(execution(outcome=Outcome.COMPLETED)) == "Finished execution."


def test_streams_merge_and_keep_their_order() -> None:
    ex = execution(
        outcome=Outcome.COMPLETED,
        outputs=[
            StreamOutput(name="stdout", text="a\n"),
            StreamOutput(name="stdout", text="b\n"),
            StreamOutput(name="stderr", text="warn\n"),
            TruncationMarker(omitted_bytes=99),
            StreamOutput(name="stdout", text="c\n"),
            ResultOutput(data={"text/plain": "3"}),
        ],
    )
    assert text_of(ex) == (
        "stdout:\n\n```\na\nb\n```\n\nstderr:\n\n```\nwarn\n\n[... 99 bytes of output omitted ...]"
        "\n```\n\nstdout:\n\n```\nc\n```\n\nexecute_result:\n\n```\n3\n```"
    )


def test_images_placeholder_and_parts() -> None:
    ex = execution(
        outcome=Outcome.COMPLETED,
        outputs=[
            DisplayOutput(data={"image/png": PNG, "text/plain": "<Figure>"}),
            ResultOutput(data={"image/png": PNG}),
        ],
    )
    output, figure = render_execution(ex, budget_bytes=1000, figure=4)
    assert output.text == (
        "[image fig-005: 1x1 PNG, shown to the user, not to you]\n\n"
        "[image fig-006: 1x1 PNG, shown to the user, not to you]"
    )
    assert figure == 6 and not output.images
    output, _ = render_execution(ex, budget_bytes=1000, images="parts")
    message = output.message("call_1")
    assert message["content"][0] == {"type": "text", "text": output.text}
    assert message["content"][1]["image_url"]["url"] == f"data:image/png;base64,{PNG}"


def test_charts_are_one_line_and_tables_their_text() -> None:
    line = (
        '{"type": "line", "title": "Trend", "x_label": "Day", "y_label": null, "elements": '
        '[{"label": "sales", "points": [[1, 2]]}, {"label": "costs", "points": [[1, 1]]}]}'
    )
    bars = json.dumps(
        {
            "type": "bar",
            "title": None,
            "elements": [{"label": str(i), "group": f"g{i % 10}", "value": i} for i in range(30)],
        }
    )
    ex = execution(
        outcome=Outcome.COMPLETED,
        outputs=[
            DisplayOutput(data={"image/png": PNG, "e2b/chart": line, "text/plain": "<Figure>"}),
            DisplayOutput(data={"image/png": PNG, "e2b/chart": bars, "text/plain": "<Figure>"}),
            ResultOutput(data={"e2b/data": '{"n": [1, 2]}', "text/plain": "   n\n0  1\n1  2"}),
        ],
    )
    assert text_of(ex) == (
        "[image fig-001: 1x1 PNG, shown to the user, not to you]\n"
        "[chart: line 'Trend'; x: Day; series: sales, costs]\n\n"
        "[image fig-002: 1x1 PNG, shown to the user, not to you]\n"
        "[chart: bar; groups: g0, g1, g2, g3, g4, g5, g6, g7 and 2 more]\n\n"
        "execute_result:\n\n```\n   n\n0  1\n1  2\n```"
    )


def test_timeout_notes() -> None:
    interrupted = execution(
        outcome=Outcome.INTERRUPTED,
        error=ErrorInfo(name="KeyboardInterrupt", value="", traceback="KeyboardInterrupt"),
    )
    assert text_of(interrupted).endswith(
        "Timeout: Code execution exceeded the time limit of 3 s and was interrupted. "
        "Variables defined before the interruption are kept. The code is too slow for this "
        "limit: write faster code (for example a loop instead of recursion, or a library "
        "function) and call the tool again with it."
    )
    killed = execution(
        outcome=Outcome.KILLED,
        state_preserved=False,
        error=ErrorInfo(name="TimeoutError", value="exceeded"),
    )
    text = text_of(killed)
    assert text.startswith(
        "Timeout: Code execution exceeded the time limit of 3 s and was stopped."
    )
    assert "all variables, imports and definitions from earlier calls are lost" in text
    assert "too slow for this limit" in text
    out_of_cpu = Execution(
        id="e",
        session_id="s",
        limits=Limits(timeout_s=30, cpu_s=20),
        outcome=Outcome.ERROR,
        error=ErrorInfo(
            name="CPUTimeExceeded",
            value="CPU time limit of this execution exceeded",
            traceback="Traceback (most recent call last):\nCPUTimeExceeded: CPU time limit ...",
        ),
    )
    text = text_of(out_of_cpu)
    # The same advice as a wall-clock timeout, with the limit that fired; not "the code failed".
    assert text.endswith(
        "Timeout: Code execution used up its CPU time limit of 20 s and was interrupted. "
        "Variables defined before the interruption are kept. The code is too slow for this "
        "limit: write faster code (for example a loop instead of recursion, or a library "
        "function) and call the tool again with it."
    )
    assert "The code failed" not in text
    crashed = execution(
        outcome=Outcome.CRASHED,
        state_preserved=False,
        error=ErrorInfo(name="SandboxCrashed", value="killed by SIGKILL"),
    )
    assert text_of(crashed).startswith("The interpreter crashed (killed by SIGKILL).")
    fresh = execution(outcome=Outcome.COMPLETED, state_preserved=False)
    assert "session had to be started anew" in text_of(fresh)


def test_budget_keeps_head_and_tail() -> None:
    ex = execution(
        outcome=Outcome.COMPLETED,
        outputs=[StreamOutput(name="stdout", text="START" + "x" * 5000 + "END")],
    )
    text = text_of(ex, budget=300)
    assert len(text.encode()) <= 300
    assert text.startswith("stdout:\n\n```\nSTART") and text.endswith("END\n```")
    assert "bytes of output omitted" in text


@settings(deadline=None)  # timing varies on a busy machine; the property does not
@given(st.text(max_size=400), st.integers(1, 500))
def test_clip_never_exceeds_budget(text: str, budget: int) -> None:
    clipped = clip(text, budget)
    assert len(clipped.encode()) <= budget
    if len(text.encode()) <= budget:
        assert clipped == text
    elif budget >= 100:
        assert "omitted" in clipped


def test_a_superchart_line_names_its_charts_and_bad_json_is_no_line() -> None:
    both = {
        "type": "superchart",
        "title": "Both",
        "elements": [
            {"type": "pie", "title": None, "elements": [{"label": "a", "angle": 360}]},
            {"type": "unknown", "title": "area", "elements": []},
        ],
    }
    assert chart_line({"e2b/chart": json.dumps(both)}) == (
        "[chart: superchart 'Both'; (pie; wedges: a); (unknown 'area')]"
    )
    assert chart_line({"e2b/chart": "{cut"}) is None and chart_line({}) is None
