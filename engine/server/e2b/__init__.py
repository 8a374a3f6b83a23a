"""E2B-compatible endpoints: code written for E2B's SDKs (`e2b`, `e2b-code-interpreter`, and what
builds on them, such as smolagents' `E2BExecutor`) runs against lci unchanged, pointed at it with
`E2B_API_URL` and `E2B_SANDBOX_URL` (the server's base URL) and `E2B_API_KEY` (its key).

    lifecycle    the control plane: sandboxes created, listed, killed, timed out
    routing      sandbox-addressed requests (the `E2b-Sandbox-Id` header) and their tokens
    interpreter  the code interpreter: /execute as NDJSON, /contexts, /health
    ndjson       lci's output items as E2B's execution lines
    files        envd's /files, and the ListDir/Stat calls of its filesystem service
    process      envd's process service: commands and terminals (`process_stream`: their streams)
    connect      connect-rpc's JSON codec: unary errors, streaming envelopes
    registry     which sandbox is which lci session(s), and when it expires
    state        the sandboxes, kept while the server runs
    mount        what the application adds: the routers, the routing middleware, the state
"""
