"""The DashScope-compatible surface: native text generation with `enable_code_interpreter`, as the
`dashscope` SDK calls it (`api`), rendered as DashScope results and events (`render`)."""
