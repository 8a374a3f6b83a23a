"""MCP: lci's sessions as MCP tools (`tools`, `render`, `workspace`), served over streamable HTTP at
`/mcp` of `lci serve` (`http`, `mount`) or over stdio by `lci mcp` (`stdio`)."""
