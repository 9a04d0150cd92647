"""Changing a job's tags from its page (issue 15): set ``key=value``, remove ``key``.

The form sends one ``{"action": "tag", "uuid", "set", "remove"}`` message to the
jobs-manager, as :mod:`.actions` sends its actions (through
:meth:`~pipelinejobs.runtime.dispatch.Runtime.submit`, as the signed-in key, named by
the form's one-time id), and shows the outcome the same way: the tags the job has
now, or the refusal in the actor's words (a key that is not a tag key, a RETIRED job,
a wrong token). The jobs-manager validates the tags (``pipelinejob_tag.json``); the
console only splits what was typed into them.

Who may, by the same rule as the actions (see :mod:`.actions`): the jobs-manager
lets an admin key change any job's tags, and anyone else with the job's update token.
So an admin sends the form as it is, and a user key pastes the token it was given
when it launched the job (a password field, sent with this one message and kept
nowhere) — the editor is not an admin's only, for a user who holds the token may
already change the tags through the API, and a form they could not use would show
only a refusal. A key that may not post to the jobs-manager sees no editor, nor does
a RETIRED job's page (its tags cannot change).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from flask import request

from pipelinejobs.access.keys import Principal
from pipelinejobs.console import actions
from pipelinejobs.console.web import bp, console, principal
from pipelinejobs.domain.identifiers import require_type
from pipelinejobs.domain.lifecycle import State
from pipelinejobs.errors import PipelineJobsError, ValidationError

TAG = actions.Action(
    "tag",
    "tag",
    "Tag",
    admin=False,
    explains="sends the tags to set and to remove to the jobs-manager.",
)
#: Most characters the form's fields take (the jobs-manager checks the tags themselves).
MAX_FIELD = 20_000


def editor(who: Principal, job: dict[str, Any]) -> dict[str, Any] | None:
    """What the job page's tag editor needs (None: no editor for this key or job)."""
    if not who.may_post(TAG.actor) or job.get("state") == State.RETIRED.value:
        return None
    return {"needs_token": not who.is_admin, "form_id": secrets.token_urlsafe(16)}


def wanted_tags(text: str) -> dict[str, str]:
    """``key=value`` lines as tags (blank lines skipped); 400 naming a line without ``=``."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, equals, value = line.partition("=")
        if not equals or not key.strip():
            raise ValidationError(
                f"line {number} of the tags to set is not key=value: {line[:80]!r}", path="set"
            )
        found[key.strip()] = value.strip()
    return found


def removed_keys(text: str) -> list[str]:
    """Keys separated by spaces or commas, each once."""
    return list(dict.fromkeys(k for k in re.split(r"[\s,]+", text) if k))


@bp.post("/jobs/<uuid>/tags")
def change_tags(uuid: str) -> Any:
    require_type(uuid, "pipelinejob")
    who = principal()
    actions.check_right(who, TAG)
    job = console().runtime.jobs.get(uuid)
    typed, gone = request.form.get("set", ""), request.form.get("remove", "")
    if len(typed) > MAX_FIELD or len(gone) > MAX_FIELD:
        raise ValidationError(f"the form's fields take at most {MAX_FIELD} characters")
    wanted, remove = wanted_tags(typed), removed_keys(gone)
    if not wanted and not remove:
        raise ValidationError(
            "say which tags to set (key=value, one a line) or which keys to remove", path="set"
        )
    message: dict[str, Any] = {"action": "tag", "uuid": uuid}
    if wanted:
        message["set"] = wanted
    if remove:
        message["remove"] = remove
    if not who.is_admin:
        message["token"] = actions.pasted_token()
    try:
        execution = actions.send(TAG.actor, message)
    except PipelineJobsError as exc:
        return actions.outcome(TAG, job, None, refused=exc)
    return actions.outcome(TAG, job, actions.wait(execution))
