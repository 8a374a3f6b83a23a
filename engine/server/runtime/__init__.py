"""What the surfaces share at run time, importing none of them:

options       the server's settings (`LCI_SERVER_*`); importing it loads no web stack
state         the shared state: session manager, tool loop, model server clients, surface parts
surface       what one surface adds to the application (`app.py` composes them)
runner        the CodeRunner the tool loop uses: sessions owned by principals, kept or expired
conversation  the tool loop behind a chat request: request rules, upstream parameters, events
proxy         requests passed to the model server unchanged
web           the web tools, built from the options
"""
