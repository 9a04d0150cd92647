"""The JSON Schemas of every message and stored document, one file each.

This is a package only so that the ``*.json`` files ship with an installed copy;
``pipelinejobs.domain.validation`` loads them into a ``referencing`` registry.
"""
