"""The plain session API (`/v1/sessions`): create sessions, run code in them (JSON or SSE), move
files in and out. For programs that embed lci as their execution backend."""
