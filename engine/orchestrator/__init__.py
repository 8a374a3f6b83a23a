"""The code-interpreter tool loop: upstream model rounds, code_interpreter calls run through a
`CodeRunner` (shell calls through a `CommandRunner`, and web_search / web_extractor calls through `WebTools`), results fed back, until the model answers. Knows nothing about HTTP serving or the
sandbox implementation. The server and the CLI use only the names exported here."""

from engine.orchestrator.calls import ToolCall, new_call_id
from engine.orchestrator.chart_text import chart_line
from engine.orchestrator.code_runner import CodeRunner
from engine.orchestrator.events import (
    CodeComplete,
    CodeStart,
    ErrorEvent,
    Event,
    ExecutionResult,
    Final,
    ReasoningDelta,
    RoundStart,
    ShellCall,
    ShellCommandDone,
    ShellOutput,
    ShellResult,
    TextDelta,
    Usage,
    UsageEvent,
    WebCall,
    WebResult,
    WebSource,
)
from engine.orchestrator.loop import Orchestrator
from engine.orchestrator.options import LoopOptions
from engine.orchestrator.shell import SHELL_TOOL, CommandRunner, command_text
from engine.orchestrator.tool import (
    NO_OUTPUT,
    TOOL_NAME,
    clip,
    error_text,
    image_mime,
    omitted_marker,
)
from engine.orchestrator.upstream import RoundRequest, UpstreamClient, normalize
from engine.orchestrator.web import (
    WEB_EXTRACTOR,
    WEB_SEARCH,
    AddressGuard,
    FetchLimits,
    PageFetcher,
    SearxngSearch,
    WebTools,
)

__all__ = [
    "NO_OUTPUT",
    "SHELL_TOOL",
    "TOOL_NAME",
    "WEB_EXTRACTOR",
    "WEB_SEARCH",
    "AddressGuard",
    "CodeComplete",
    "CodeRunner",
    "CodeStart",
    "CommandRunner",
    "ErrorEvent",
    "Event",
    "ExecutionResult",
    "FetchLimits",
    "Final",
    "LoopOptions",
    "Orchestrator",
    "PageFetcher",
    "ReasoningDelta",
    "RoundRequest",
    "RoundStart",
    "SearxngSearch",
    "ShellCall",
    "ShellCommandDone",
    "ShellOutput",
    "ShellResult",
    "TextDelta",
    "ToolCall",
    "UpstreamClient",
    "Usage",
    "UsageEvent",
    "WebCall",
    "WebResult",
    "WebSource",
    "WebTools",
    "chart_line",
    "clip",
    "command_text",
    "error_text",
    "image_mime",
    "new_call_id",
    "normalize",
    "omitted_marker",
]
