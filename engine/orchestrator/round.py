"""One round of the loop: what the model's streamed reply produced (text, reasoning, tool calls,
usage, finish reason), and the assistant message it becomes in the conversation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.orchestrator.calls import CallAccumulator, ToolCall
from engine.orchestrator.events import Usage
from engine.orchestrator.textcalls import TextScanner


@dataclass
class Round:
    """What one round's stream produced."""

    number: int
    scanner: TextScanner
    announce: bool  # emit code_start live for native calls (not in a round that cannot run code)
    web_tools: tuple[str, ...] = ()  # names of calls that are not announced as code
    native: CallAccumulator = field(default_factory=CallAccumulator)
    announced: set[str] = field(default_factory=set)
    reasoning: str = ""
    reasoning_field: str = "reasoning_content"
    usage: Usage | None = None
    finish_reason: str | None = None
    shown: bool = False

    def reset(self) -> None:
        self.scanner = self.scanner.fresh()
        self.native, self.announced = CallAccumulator(), set()
        self.reasoning, self.usage, self.finish_reason, self.shown = "", None, None, False

    def calls(self) -> list[ToolCall]:
        return self.native.finish() + self.scanner.calls

    def assistant_message(self, calls: list[ToolCall]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.scanner.visible}
        if self.reasoning:
            # Qwen templates render the reasoning of tool rounds in <think>, so it must go back.
            # Most servers read `reasoning_content` (vLLM again since it stopped sending it);
            # Ollama reads `reasoning`: a server that sent `reasoning` gets both.
            message["reasoning_content"] = self.reasoning
            message[self.reasoning_field] = self.reasoning
        message["tool_calls"] = [call.as_message_entry() for call in calls]
        return message
