"""Webhooks in the console (issue 16): the list (an admin's: all; a user's: its own),
a subscription's page with its recent deliveries — and never a secret."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from pipelinejobs.access.keys import owner_label
from pipelinejobs.runtime.dispatch import Runtime
from tests.console.conftest import Keys, a_job, make_pipeline, text_of
from tests.support import stub
from tests.webhook_receiver import receiver


def rows_of(page: str) -> list[str]:
    return re.findall(r'<tr data-webhook="([^"]+)"', page)


def owner_of(runtime: Runtime, secret: str) -> str:
    from pipelinejobs.access.keys import Keys as StoredKeys

    principal = StoredKeys(runtime.store).authenticate(secret)
    return owner_label(principal.owner)


def test_the_list_and_a_subscriptions_deliveries(
    admin: FlaskClient, user: FlaskClient, runtime: Runtime, keys: Keys
) -> None:
    subs = runtime.notices.subscriptions
    with receiver() as hook:
        mine, mine_secret = subs.create(
            {"url": hook.url}, owner=owner_of(runtime, keys.user), role="user",
            allow_private=True,
        )  # fmt: skip
        theirs, theirs_secret = subs.create(
            {"url": hook.url, "filter": {"events": ["finish"]}, "batch": 5}, owner="someone00000",
            role="admin", allow_private=True,
        )  # fmt: skip
        hook.secret = theirs_secret
        runtime.notices.forget()
        job = a_job(runtime, pipeline=make_pipeline(runtime))
        runtime.jobs.apply(job["uuid"], "finish")
        runtime.notices.flush()  # the notice window's gathered events, sent now
        stub(runtime).join()
        assert hook.events()

    everyone = text_of(admin.get("/ui/webhooks"))
    assert 'class="here">Webhooks</a>' in everyone
    assert sorted(rows_of(everyone)) == sorted([theirs["id"], mine["id"]])  # same ms: either
    own = text_of(user.get("/ui/webhooks"))
    assert rows_of(own) == [mine["id"]]

    page = text_of(admin.get(f"/ui/webhooks/{theirs['id']}"))
    assert re.findall(r'<tr data-delivery="([^"]+)" data-status="200"', page)
    assert "finish" in page and job["uuid"] in page
    assert 'id="batch">up to 5 events per POST' in page
    assert "1 events of 1 job(s)" in page  # the batch's items, in the events cell's title
    mine_page = text_of(user.get(f"/ui/webhooks/{mine['id']}"))
    assert 'id="batch">one event per POST' in mine_page
    for text in (everyone, own, page):
        assert mine_secret not in text and theirs_secret not in text
    assert user.get(f"/ui/webhooks/{theirs['id']}").status_code == 404
