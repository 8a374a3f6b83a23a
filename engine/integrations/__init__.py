"""Adapters that let other agent frameworks run their code in lci. Each needs its own optional extra
and is imported explicitly (`engine.integrations.smolagents` needs `lci[smolagents]`)."""
