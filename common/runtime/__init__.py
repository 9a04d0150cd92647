"""The runtime: actors, the one dispatch point (``dispatch.Runtime``: submit and
deliver), executions, idempotency keys, the quarantine of poisoned records, and the
system that wires a process's stores, bus and workers from its configuration."""
