"""The OpenAI-compatible surface: Responses with the code interpreter (`responses/`), Chat
Completions (`chat`), Containers and their files (`containers/`), and Files (`files/`).

Responses share this surface's containers and files (a Responses call runs in a container; its
`file_ids` come from the Files API), so they are one surface; `state` holds what it keeps while
the server runs, and `mount` says what it adds to the application."""
