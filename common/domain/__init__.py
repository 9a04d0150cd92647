"""The domain: what a pipeline and a job are, and the rules they follow.

The job lifecycle, jobs and pipelines in the store, pipeline components, typed
identifiers, archive paths, schema validation and time. Nothing here knows of HTTP,
brokers, databases or processes (tests/test_layers.py checks it); it reaches the
store only through its interface.
"""
