"""`python -m benchmarks.model_eval` on a few questions against the fake model, so it cannot rot; and
the question set's answers, recomputed."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import model_eval
from tests.fake_llm import SSE, FakeLLM, Reply, dict_call, last_tool_text, stream


@pytest.mark.parametrize("name", ["model_eval_questions.json", "model_eval_heldout.json"])
def test_question_set_answers_are_what_their_code_computes(name: str) -> None:
    questions = model_eval.load_questions(model_eval.QUESTIONS.with_name(name))
    assert len(questions) >= (30 if name == "model_eval_questions.json" else 12)
    assert len({q["id"] for q in questions}) == len(questions)
    for question in questions:
        scope: dict[str, Any] = {}
        exec("import datetime, hashlib, math, statistics\n" + question["computed_by"], scope)
        answer = scope["answer"]
        if question["kind"] == "float":
            assert math.isclose(answer, question["answer"], rel_tol=1e-12), question["id"]
        else:
            assert str(answer) == str(question["answer"]), question["id"]


@pytest.mark.parametrize(
    ("kind", "expected", "text", "correct"),
    [
        ("int", "10281600", "There are 10,281,600 seconds in 17 weeks.", True),
        ("int", "10281600", "There are 17 weeks, 7 days each.", False),
        ("int", "40320", "8! = 40320", True),
        ("float", 1418.34, "It is worth €1,418.34.", True),
        ("float", 1418.34, "It is worth €1,418.", False),
        ("text", "Tuesday", "It was a **Tuesday**.", True),
        ("text", "Friday", "Fridays are nice; it is a Monday.", False),
    ],
)
def test_scoring(kind: str, expected: Any, text: str, correct: bool) -> None:
    question = {"question": "How many seconds are in 17 weeks of 7 days?", "kind": kind}
    question.update(answer=expected, rel_tol=1e-6)
    assert model_eval.is_correct(question, text) is correct


@pytest.mark.parametrize(
    ("text", "correct"),
    [
        ("58", True),
        ("Sorted: 99, 71, 58, 42, 23, 17, 3. The third one is 58.", True),
        ("The numbers were 42, 17, 99, 3, 58, 23 and 71.", False),
        ("The third largest is 71.", False),
    ],
)
def test_scoring_when_the_answer_is_one_of_the_question_numbers(text: str, correct: bool) -> None:
    question = {"question": "Sort 42, 17, 99, 3, 58, 23, 71; the third largest?", "kind": "int"}
    assert model_eval.is_correct({**question, "answer": "58"}, text) is correct


def _answer_from_result(body: dict[str, Any]) -> SSE:
    return stream(text="The answer is " + last_tool_text(body).split("```")[1].strip() + ".")


def test_model_eval_runs_against_the_fake_model(llm: FakeLLM, tmp_path: Path) -> None:
    q1, q2, q3 = model_eval.load_questions()[:3]
    llm.script(
        # with lci: a native call, a call written as a Python dict, a loop that is stopped
        stream(calls=["123**21"]),
        Reply(_answer_from_result),
        stream(text=dict_call("7**77")),
        Reply(_answer_from_result),
        stream(calls=["x = 1"]),
        stream(calls=["x = 1"]),  # a repeat of a call that worked forces the answer
        stream(text=""),  # the forced final round, and still no answer
        # without lci
        stream(text="123**21 is about 7.7e43."),
        stream(text=""),
        stream(text=f"It is {q3['answer']}."),
    )
    common = [
        "--base-url",
        llm.base_url,
        "--model",
        "m",
        "--limit",
        "3",
        "--out-dir",
        str(tmp_path),
    ]
    assert model_eval.main([*common, "--modes", "lci", "--name", "with"]) == 0
    assert model_eval.main([*common, "--modes", "direct", "--name", "without"]) == 0
    llm.check()
    parts = [str(tmp_path / "with.json"), str(tmp_path / "without.json")]
    assert model_eval.main([*common, "--combine", *parts]) == 0
    data = json.loads((tmp_path / "model_eval.json").read_text())
    assert (tmp_path / "model_eval.png").read_bytes().startswith(b"\x89PNG")
    lci, direct = data["summary"]["lci"], data["summary"]["direct"]
    assert (lci["correct"], lci["empty_answers"], lci["fallback_answers"], lci["loops"]) == (
        2,
        0,
        1,
        1,
    )
    assert lci["errors"] == 0 and lci["mean_calls"] == pytest.approx(3 / 3)
    assert (direct["correct"], direct["empty_answers"], direct["errors"]) == (1, 1, 0)
    records = {r["id"]: r for r in data["records"]["lci"]}
    assert records[q1["id"]]["correct"] and records[q2["id"]]["calls"] == 1
    assert records[q3["id"]]["loop"] and not records[q3["id"]]["correct"]
    assert [r["body"]["temperature"] for r in map(vars, llm.requests)] == [0.0] * 10
    steps = records[q3["id"]]["steps"]  # what the model ran, kept for reading a wrong answer
    assert [(s["code"], s["status"]) for s in steps] == [
        ("x = 1", "executed"),
        ("x = 1", "repeated"),
    ]
    assert records[q1["id"]]["steps"][0]["output"].startswith("execute_result:")
