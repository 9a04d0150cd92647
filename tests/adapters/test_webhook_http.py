"""The webhook sender (issue 16): POSTs over kept-alive connections, redirects not
followed, long answers not read, and several receivers waited on at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pipelinejobs.adapters.webhook_http import PARALLEL, WebhookSender
from tests.webhook_receiver import Receiver, receiver


@pytest.fixture
def sender() -> Iterator[WebhookSender]:
    made = WebhookSender()
    yield made
    made.close()


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


def test_a_2xx_is_taken_and_anything_else_says_why(sender: WebhookSender, hook: Receiver) -> None:
    body = b'{"delivery_id":"x"}'
    headers = {"X-PipelineJobs-Delivery": "x"}
    assert sender.post(hook.url, body, headers, 2.0) == (200, None)
    hook.answer = lambda n: 500
    assert sender.post(hook.url, body, headers, 2.0) == (500, "HTTP 500")
    hook.answer = lambda n: 302
    status, error = sender.post(hook.url, body, headers, 2.0)
    assert status == 302 and "redirects are not followed" in str(error)
    status, error = sender.post("http://127.0.0.1:9/none", body, headers, 2.0)
    assert status is None and "Error" in str(error)


def test_each_runs_the_work_at_once_and_keeps_the_order(sender: WebhookSender) -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def work(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return i * 10

    assert sender.each(work, range(PARALLEL)) == [i * 10 for i in range(PARALLEL)]
    assert most > 1, "the items ran one after another"


def test_each_raises_the_first_error_after_every_item_ran(sender: WebhookSender) -> None:
    done: list[int] = []

    def work(i: int) -> int:
        if i == 1:
            raise ValueError("item 1")
        time.sleep(0.02)
        done.append(i)
        return i

    with pytest.raises(ValueError, match="item 1"):
        sender.each(work, range(4))
    assert sorted(done) == [0, 2, 3]
