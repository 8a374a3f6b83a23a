"""How well a real model answers questions that need computation, with lci's loop and without it.

Each question of `model_eval_questions.json` (exact answers computed independently when the set was
written) is asked in plain words twice: through lci's code-interpreter loop (the library the server
and `lci chat` run, with a fresh sandbox session per question), and straight to the model server
as a plain chat completion. Printed and saved (results/<name>.json and .png): accuracy, model rounds,
code executions, empty answers, answers lci had to give itself from the last code result, loops
(a forced final answer after repeats or errors), answers cut short, and errors.

    python -m benchmarks.model_eval --base-url http://127.0.0.1:18080/v1 --model qwen2.5-coder-1.5b
    options: --questions FILE, --limit N (the first N questions), --only q02,q05,
             --modes lci,direct, --temperature 0, --seed 0, --max-tokens 1024,
             --python-blocks auto|on|off, --system-prompt FILE, --name model_eval, --out-dir DIR

An answer is correct when it states the expected value: an integer among the numbers of the answer
that are not in the question (the answer's last number when the expected value is one of the
question's own), a float within the question's tolerance, a word or hex string as a whole word.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import openai

from benchmarks.common import RESULTS, machine, progress
from engine.config import Settings
from engine.core.manager import SessionManager
from engine.orchestrator import LoopOptions, Orchestrator, UpstreamClient
from engine.orchestrator.events import ErrorEvent, ExecutionResult, Final
from engine.session_runner import SessionRunner

QUESTIONS = Path(__file__).with_name("model_eval_questions.json")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_DIGIT_GROUPS = re.compile(r"(?<=\d)[,_\u2009\u202f](?=\d{3}\b)|(?<=\d)\\,(?=\d)")


@dataclass
class Record:
    id: str
    mode: str
    correct: bool
    answer: str
    rounds: int = 1
    calls: int = 0
    empty: bool = False
    fallback: bool = False
    loop: bool = False
    cut_short: bool = False
    error: str | None = None
    seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    # What the model ran and what it got back, so a wrong answer can be read, not guessed at.
    steps: list[dict[str, str]] = field(default_factory=list)


def load_questions(path: Path = QUESTIONS) -> list[dict[str, Any]]:
    questions: list[dict[str, Any]] = json.loads(path.read_text())["questions"]
    return questions


def numbers(text: str) -> list[str]:
    """The numbers written in `text`, with digit-group separators (1,000 / 1_000) removed."""
    previous = None
    while previous != text:
        previous, text = text, _DIGIT_GROUPS.sub("", text)
    return _NUMBER.findall(text)


def is_correct(question: dict[str, Any], text: str) -> bool:
    expected = question["answer"]
    if question["kind"] == "text":
        pattern = rf"(?<![0-9A-Za-z]){re.escape(str(expected))}(?![0-9A-Za-z])"
        return re.search(pattern, text, re.IGNORECASE) is not None
    given = set(numbers(question["question"]))
    found = [n for n in numbers(text) if n not in given]
    if str(expected) in given:  # the answer is one of the question's numbers (pick the third...)
        found = numbers(text)[-1:]  # only a reply that ends on it states it
    if question["kind"] == "int":  # 10281600 or 10281600.0, not 1.02816e7
        return any(
            n.split(".")[0] == str(expected) and set(n[len(str(expected)) + 1 :]) <= {"0"}
            for n in found
        )
    tolerance = float(question.get("rel_tol", 1e-6))
    return any(_close(n, float(expected), tolerance) for n in found)


def _close(text: str, expected: float, tolerance: float) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isclose(value, expected, rel_tol=tolerance, abs_tol=tolerance)


async def ask_lci(
    orchestrator: Orchestrator,
    runner: SessionRunner,
    question: dict[str, Any],
    options: LoopOptions,
) -> Record:
    conversation = uuid.uuid4().hex
    record = Record(question["id"], "lci", False, "")
    started = time.monotonic()
    messages = [{"role": "user", "content": question["question"]}]
    try:
        async for event in orchestrator.run(
            messages, conversation_id=conversation, options=options
        ):
            if isinstance(event, ExecutionResult):
                step = {"code": event.code, "status": event.status, "output": event.output}
                record.steps.append(step)
            if isinstance(event, (Final, ErrorEvent)):
                record.rounds, record.calls = event.rounds, event.executions
                record.input_tokens = event.usage.input_tokens
                record.output_tokens = event.usage.output_tokens
            if isinstance(event, Final):
                record.answer = event.text
                record.fallback = event.fallback
                record.loop = event.forced in ("repeats", "errors")
                record.cut_short = event.finish_reason == "length"
            elif isinstance(event, ErrorEvent):
                record.error = f"{event.code}: {event.message}"
    finally:
        await runner.close(conversation)
    record.seconds = time.monotonic() - started
    return _scored(record, question)


async def ask_direct(
    client: openai.AsyncOpenAI, model: str, question: dict[str, Any], params: dict[str, Any]
) -> Record:
    record = Record(question["id"], "direct", False, "")
    started = time.monotonic()
    try:
        chunks = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": question["question"]}],
            stream=True,
            stream_options={"include_usage": True},
            **params,
        )
        parts: list[str] = []
        async for chunk in chunks:
            if chunk.usage is not None:
                record.input_tokens = chunk.usage.prompt_tokens
                record.output_tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                parts.append(choice.delta.content or "")
                record.cut_short = record.cut_short or choice.finish_reason == "length"
        record.answer = "".join(parts)
    except openai.APIError as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    record.seconds = time.monotonic() - started
    return _scored(record, question)


def _scored(record: Record, question: dict[str, Any]) -> Record:
    record.empty = record.error is None and not record.answer.strip()
    record.correct = record.error is None and is_correct(question, record.answer)
    return record


def summarize(records: list[Record]) -> dict[str, Any]:
    n = len(records)
    return {
        "questions": n,
        "correct": sum(r.correct for r in records),
        "accuracy": sum(r.correct for r in records) / n if n else 0.0,
        "mean_rounds": statistics.fmean(r.rounds for r in records) if n else 0.0,
        "mean_calls": statistics.fmean(r.calls for r in records) if n else 0.0,
        "empty_answers": sum(r.empty for r in records),
        "fallback_answers": sum(r.fallback for r in records),
        "loops": sum(r.loop for r in records),
        "cut_short": sum(r.cut_short for r in records),
        "errors": sum(r.error is not None for r in records),
        "mean_seconds": statistics.fmean(r.seconds for r in records) if n else 0.0,
        "input_tokens": sum(r.input_tokens for r in records),
        "output_tokens": sum(r.output_tokens for r in records),
    }


async def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    questions = load_questions(args.questions)[: args.limit or None]
    if args.only:
        wanted = set(args.only.split(","))
        questions = [q for q in questions if q["id"] in wanted]
    params: dict[str, Any] = {"temperature": args.temperature}
    if args.seed >= 0:  # rounds lci samples less greedily (after a repeated failure) repeat too
        params["seed"] = args.seed
    if args.max_tokens:
        params["max_tokens"] = args.max_tokens
    modes = args.modes.split(",")
    records: dict[str, list[Record]] = {mode: [] for mode in modes}
    if "lci" in modes:
        settings = Settings(subprocess_warm_pool=1, docker_warm_pool=0)
        blocks = {"auto": "auto", "on": True, "off": False}[args.python_blocks]
        options = LoopOptions(params=params, python_blocks=blocks, deadline_s=args.deadline)
        if args.system_prompt is not None:
            options.system_prompt = args.system_prompt.read_text().strip()
        async with (
            SessionManager(settings) as manager,
            UpstreamClient(args.base_url, args.api_key, read_timeout_s=600) as upstream,
        ):
            runner = SessionRunner(manager)
            orchestrator = Orchestrator(upstream, runner, args.model)
            for question in questions:
                record = await ask_lci(orchestrator, runner, question, options)
                records["lci"].append(record)
                _report(record, len(questions), records, args)
    if "direct" in modes:
        async with openai.AsyncOpenAI(
            base_url=args.base_url, api_key=args.api_key, timeout=600, max_retries=1
        ) as client:
            for question in questions:
                record = await ask_direct(client, args.model, question, params)
                records["direct"].append(record)
                _report(record, len(questions), records, args)
    return {
        "model": args.model,
        "base_url": args.base_url,
        "params": params,
        "python_blocks": args.python_blocks,
        "summary": {mode: summarize(rs) for mode, rs in records.items()},
        "records": {mode: [asdict(r) for r in rs] for mode, rs in records.items()},
    }


def combine(paths: list[Path], question_file: Path = QUESTIONS) -> dict[str, Any]:
    """One results document from several, each contributing its modes."""
    merged: dict[str, Any] = {}
    for path in paths:
        data = json.loads(path.read_text())
        data.pop("machine", None)
        records = data.pop("records")
        summary = data.pop("summary", None)
        if summary is None:  # a .partial.json: only records, scored again here
            questions = {q["id"]: q for q in load_questions(question_file)}
            scored = {
                m: [_scored(Record(**r), questions[r["id"]]) for r in rs]
                for m, rs in records.items()
            }
            records = {m: [asdict(r) for r in rs] for m, rs in scored.items()}
            summary = {m: summarize(rs) for m, rs in scored.items()}
        merged = {**data, **merged, "summary": merged.get("summary", {}) | summary}
        merged["records"] = merged.get("records", {}) | records
    return merged


def _report(
    record: Record, total: int, records: dict[str, list[Record]], args: argparse.Namespace
) -> None:
    # What was measured so far survives an interrupted run (a slow machine, a deadline).
    partial = args.out_dir / f"{args.name}.partial.json"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    done = {mode: [asdict(r) for r in rs] for mode, rs in records.items()}
    partial.write_text(json.dumps({"model": args.model, "records": done}, indent=1) + "\n")
    mark = "ok " if record.correct else "BAD"
    notes = [
        note
        for note, present in (
            ("empty", record.empty),
            ("fallback", record.fallback),
            ("loop", record.loop),
            ("cut short", record.cut_short),
            (f"error {record.error}", record.error is not None),
        )
        if present
    ]
    progress(
        f"{record.mode:6} {record.id}/{total} {mark} rounds={record.rounds} calls={record.calls} "
        f"{record.seconds:.1f}s {' '.join(notes)} | {record.answer.strip()[:80]!r}"
    )


def save(results: dict[str, Any], out_dir: Path, name: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **results}, indent=2) + "\n")
    plot(results["summary"], path.with_suffix(".png"), results["model"])
    return path


def plot(summary: dict[str, dict[str, Any]], path: Path, model: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("matplotlib not installed: no plot written")
        return
    modes = list(summary)
    colors = {"lci": "#4c72b0", "direct": "#999999"}
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), width_ratios=[1, 3])
    accuracy = [100 * summary[m]["accuracy"] for m in modes]
    left.bar(modes, accuracy, color=[colors.get(m, "#55a868") for m in modes])
    left.set_ylim(0, 100)
    left.set_ylabel("% correct")
    for index, value in enumerate(accuracy):
        left.text(index, value, f"{value:.0f}%", ha="center", va="bottom")
    metrics = ["mean_rounds", "mean_calls", "empty_answers", "fallback_answers", "loops", "errors"]
    width = 0.8 / len(modes)
    for offset, mode in enumerate(modes):
        values = [summary[mode][k] for k in metrics]
        xs = [i + offset * width for i in range(len(metrics))]
        right.bar(xs, values, width, label=mode, color=colors.get(mode, "#55a868"))
        for x, value in zip(xs, values, strict=True):
            right.text(x, value, f"{value:.3g}", ha="center", va="bottom", fontsize=8)
    right.set_xticks([i + width * (len(modes) - 1) / 2 for i in range(len(metrics))])
    right.set_xticklabels([m.replace("_", " ") for m in metrics])
    right.legend()
    n = summary[modes[0]]["questions"]
    figure.suptitle(f"{model}: {n} questions that need computation, with and without lci")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def print_table(summary: dict[str, dict[str, Any]]) -> None:
    rows = [
        ("correct", lambda s: f"{s['correct']}/{s['questions']} ({100 * s['accuracy']:.0f}%)"),
        ("mean rounds", lambda s: f"{s['mean_rounds']:.2f}"),
        ("mean code executions", lambda s: f"{s['mean_calls']:.2f}"),
        ("empty answers", lambda s: str(s["empty_answers"])),
        ("answers lci gave from the last result", lambda s: str(s["fallback_answers"])),
        ("loops stopped", lambda s: str(s["loops"])),
        ("cut short", lambda s: str(s["cut_short"])),
        ("errors", lambda s: str(s["errors"])),
        ("mean seconds per question", lambda s: f"{s['mean_seconds']:.1f}"),
    ]
    modes = list(summary)
    print("| | " + " | ".join(modes) + " |")
    print("|---|" + "---|" * len(modes))
    for label, cell in rows:
        print(f"| {label} | " + " | ".join(cell(summary[m]) for m in modes) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.model_eval", description=__doc__)
    parser.add_argument("--base-url", required=True, help="the model server's /v1 URL")
    parser.add_argument("--model", required=True, help="model name sent to the server")
    parser.add_argument("--api-key", default="none")
    parser.add_argument(
        "--questions",
        type=Path,
        default=QUESTIONS,
        help="the question set (default: model_eval_questions.json; model_eval_heldout.json is "
        "a second set, for checking that a change tuned on the first carries over)",
    )
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions")
    parser.add_argument("--only", default="", help="only these question ids (q02,q05)")
    parser.add_argument("--modes", default="lci,direct", help="lci, direct or both (lci,direct)")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed sent; -1: none")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds per question")
    parser.add_argument("--python-blocks", choices=["auto", "on", "off"], default="auto")
    parser.add_argument(
        "--system-prompt", type=Path, help="a file whose text replaces lci's default system prompt"
    )
    parser.add_argument("--name", default="model_eval", help="file name of the results")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--combine",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="no run: merge the modes of earlier results files (e.g. lci and direct measured "
        "one after the other) into one",
    )
    args = parser.parse_args(argv)
    results = combine(args.combine, args.questions) if args.combine else asyncio.run(evaluate(args))
    path = save(results, args.out_dir, args.name)
    print_table(results["summary"])
    print(f"saved {path} and {path.with_suffix('.png').name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
