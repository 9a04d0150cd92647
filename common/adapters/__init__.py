"""Adapters: each backend behind one small interface with a real implementation and
an in-memory one — the document store, the message bus, the launchers of compute,
and the archive storage."""
