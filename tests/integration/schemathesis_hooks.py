"""Schemathesis hooks of tests/integration/test_schemathesis.py (loaded by ``st`` only).

An ``Idempotency-Key`` names one request: the same key on a different request is
refused (409), which is right, and a generator drawing from the header's schema
reuses its smallest keys for every request — after the first, every positive case
would only ever meet that refusal. A well-formed key is therefore made unique per
request, as a client makes it; a malformed one is left alone, for the 400 it earns.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import schemathesis

HEADER = "Idempotency-Key"
FORM = re.compile(r"[\x21-\x7e]{1,255}")
_KEYS = itertools.count()


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    headers = case.headers
    if headers and HEADER in headers and FORM.fullmatch(str(headers[HEADER])):
        headers[HEADER] = f"schemathesis-{next(_KEYS)}"
