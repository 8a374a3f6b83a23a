"""Settings of the HTTP server, read from `LCI_SERVER_*` environment variables (and overridable in
code or by `lci serve` options). The switches marked (cfg) in api_reference section 7 live here."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1 << 20


class ServerOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LCI_SERVER_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to bind; 127.0.0.1 keeps it local.")
    port: int = Field(8000, ge=0, le=65535)
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names clients may use besides IP addresses, localhost and the bind "
        "address (against DNS rebinding); '*' allows any.",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="A request's headers must arrive within this time."
    )
    body_timeout_s: float = Field(
        120.0, gt=0, description="A request's body must arrive within this time."
    )
    keep_alive_s: float = Field(5.0, gt=0, description="An idle keep-alive connection is closed.")
    max_connections: int = Field(
        512,
        ge=8,
        description="Open connections at most; beyond it the oldest ones still sending headers "
        "are closed, then new ones are refused.",
    )
    max_body_bytes: int = Field(
        8 * MIB, ge=1024, description="Largest request body, except file uploads."
    )
    max_upload_bytes: int = Field(64 * MIB, ge=1024, description="Largest file upload body.")
    max_file_store_bytes: int = Field(
        1024 * MIB, ge=1024, description="All files uploaded to /v1/files together."
    )
    allow_non_stream: bool = Field(
        True, description="Serve chat and native requests with the code interpreter unstreamed."
    )
    require_thinking: bool = Field(
        False,
        description="Refuse code-interpreter requests that switch thinking off (enable_thinking "
        "false, reasoning.effort none), as the hosted service does. Off by default: a local "
        "server fronts models that may have no thinking at all.",
    )
    force_thinking: bool = Field(
        False,
        description="Turn thinking on when a code-interpreter request disables it, instead of "
        "passing it on (or, with require_thinking, rejecting the request).",
    )
    strict_openai_include: bool = Field(
        False,
        description="Null code_interpreter_call outputs unless the request includes "
        "'code_interpreter_call.outputs' (OpenAI's behaviour).",
    )
    unsupported_builtin_tools: Literal["ignore", "error"] = Field(
        "ignore", description="What to do with built-in tools lci does not have (web_search ...)."
    )
    max_rounds: int = Field(20, ge=1, description="Model calls per request.")
    python_blocks: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Run fenced ```python blocks of the model's text as code-interpreter calls: "
        "auto: until the model makes a native tool call (models without working tool calls "
        "write their code that way); a request's own `python_blocks` overrides it.",
    )
    implicit_container_ttl_s: float = Field(
        300.0,
        ge=0,
        description="How long a Responses container the request did not name is kept after the "
        "request, unless a later request continues in it (0: closed at the request's end).",
    )
    on_max_rounds: Literal["final_call", "stop"] = "final_call"
    deadline_s: float = Field(600.0, gt=0, description="Wall time of one request's tool loop.")
    heartbeat_s: float = Field(
        10.0, gt=0, description="An SSE comment is sent when a stream was quiet this long."
    )
    thinking_switch: Literal["chat_template_kwargs", "enable_thinking", "none"] = Field(
        "chat_template_kwargs",
        description="How a client's enable_thinking reaches the model server: as "
        "chat_template_kwargs (vLLM, SGLang, llama.cpp), as a top-level enable_thinking "
        "(DashScope), or not at all.",
    )
    stored_responses: int = Field(
        256, ge=0, description="Responses kept for previous_response_id (oldest dropped first)."
    )
    mcp_inline_bytes: int = Field(
        4 * MIB,
        ge=1024,
        description="Largest file the MCP download_file tool embeds; larger ones are linked.",
    )
    shutdown_grace_s: float = Field(
        5.0, ge=1, description="How long open requests may finish when the server stops."
    )
