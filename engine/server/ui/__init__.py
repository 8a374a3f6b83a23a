"""The browser app: a playground over the Responses API and a console of the session API, static
files that talk to the server only through its public APIs."""
