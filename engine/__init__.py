"""lci: a local code interpreter for any LLM."""
