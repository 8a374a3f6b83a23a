"""The in-sandbox agent: a persistent Python namespace that runs cells and reports what happened.

Everything in this package uses the standard library only and imports nothing from `engine`, so any
image with python3 can run it. Inside a sandbox it is importable as `lci_agent` (the host copies this
directory there); on the host it is `engine.agent`, which lets the host share the frame codec.
"""
