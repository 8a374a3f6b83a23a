"""HTTP mechanics every surface shares, naming none of them (except the one table in `errors` that
says which error shape a path gets):

    gate         the ASGI gate before routing: Host/Origin check, API key, body size and read time
    auth         API keys and the principal each one names
    hosts        which Host and Origin headers the server answers (against DNS rebinding)
    connections  uvicorn's HTTP protocol with a header deadline and a connection cap
    sse          server-sent event framing, streaming responses, client disconnects
    errors       error codes to HTTP statuses, and the error body of each surface
    openapi      how routes declare their statuses and streamed answers in the OpenAPI document
    transfer     file downloads as attachments
"""
