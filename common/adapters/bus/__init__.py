"""The message bus: how an execution id reaches the worker that runs it.

One small interface (:mod:`.base`), Celery on Redis, RabbitMQ or kombu's in-process
transport (:mod:`.celery`), and a stub drained by ``join()`` in tests (:mod:`.stub`).
"""
