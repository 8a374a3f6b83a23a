"""Settings of the HTTP server, read from `LCI_SERVER_*` environment variables (and overridable in
code or by `lci serve` options). The switches that items of the conformance checklist mark (cfg)
live here (docs/conformance/checklist.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engine.loop_settings import (
    DEADLINE_S,
    MAX_ROUNDS,
    LoopDeadline,
    MaxRounds,
    OnMaxRounds,
    PythonBlocks,
)
from engine.models import MIB


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
        1024 * MIB,
        ge=1024,
        description="All files uploaded to /v1/files together; each API key may keep "
        "this divided by the number of keys.",
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
    max_rounds: MaxRounds = MAX_ROUNDS
    # Models without working tool calls write their code that way; a request's own
    # `python_blocks` overrides it.
    python_blocks: PythonBlocks = "auto"
    implicit_container_ttl_s: float = Field(
        300.0,
        ge=0,
        description="How long a Responses container the request did not name is kept after the "
        "request, unless a later request continues in it (0: closed at the request's end).",
    )
    on_max_rounds: OnMaxRounds = "final_call"
    deadline_s: LoopDeadline = DEADLINE_S
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
    web_search_url: str | None = Field(
        None,
        description="Base URL of a SearXNG instance (its JSON format enabled): offers web_search "
        "(and web_extractor) to requests that enable them. Unset: no web tools.",
    )
    web_extractor: Literal["auto", "on", "off"] = Field(
        "auto", description="Offer web_extractor: auto: when web search is configured."
    )
    web_allow_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts web_extractor may fetch although they resolve to loopback or private "
        "addresses (an intranet; comma-separated in the environment).",
    )
    web_timeout_s: float = Field(15.0, gt=0, description="One search or one page fetch.")
    web_max_page_bytes: int = Field(
        2 * MIB, ge=1024, description="Bytes of one page read; the rest is not downloaded."
    )
    web_max_pages: int = Field(5, ge=1, description="Pages one request may read.")
    web_page_chars: int = Field(
        8000, ge=200, description="Characters of a page's main text given to the model."
    )
    web_max_results: int = Field(5, ge=1, le=50, description="Search hits given to the model.")
    metrics: bool = Field(
        True,
        description="Serve Prometheus metrics at /metrics (behind the key, when keys are set).",
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Serve /metrics on this port of its own instead (no key asked: bind it to a "
        "loopback or otherwise protected address).",
    )
    metrics_host: str = Field("127.0.0.1", description="The address of metrics_port.")
    tracing: bool = Field(
        False,
        description="Record OpenTelemetry traces and export them by OTLP (needs the otel extra).",
    )
    otlp_endpoint: str | None = Field(
        None,
        description="Where traces go (an OTLP/HTTP base URL, e.g. http://127.0.0.1:4318); unset: "
        "the OTEL_EXPORTER_OTLP_* variables, else localhost:4318.",
    )
    ui: bool = Field(
        True,
        description="Serve the browser playground and session console at / (static pages: "
        "they load data only through the API, with the key the user types in).",
    )
    shutdown_grace_s: float = Field(
        5.0, ge=1, description="How long open requests may finish when the server stops."
    )

    @field_validator("web_allow_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [host.strip() for host in value.split(",") if host.strip()]
        return value
