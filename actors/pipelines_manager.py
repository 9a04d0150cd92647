"""Pipelines Manager: registers and manages Data Catalog pipelines.

From the seed: "All Pipeline management actions are accomplished by sending
JSON-formatted messages to the Pipelines Manager Reactor."

- **Create**: send the pipeline's JSON document (``pipeline_manager_create``). The
  result holds the pipeline's UUID and its update token. The same components again
  return the existing pipeline, said so — but not its token: knowing a pipeline's
  components must not be enough to change it. (A redelivery of the execution that
  registered it is told the token again: the pipeline records that execution.) A
  component id (an Agave app id) another pipeline holds is refused, 409 naming that
  pipeline: app ids are unique among pipelines until their pipeline is retired
  (:mod:`pipelinejobs.domain.pipelines`).
- **Update**: "A pipeline's components cannot be updated, but its human-readable
  name and description can be": send the edited document with ``-q token=...``
  (the seed's way), or a ``pipeline_manager_update`` message ``{uuid, action:
  update, body, token}``. Different components are refused: components are immutable.
- **Retire, disable, enable, get, rotate_token** (``pipeline_manager_action``): "A
  pipeline cannot be deleted, but it can be retired from active service." A
  disabled or retired pipeline accepts no new jobs; only a disabled one can be
  enabled again. Rotating the token needs an admin token. The result of an update,
  disable, enable or retire holds the pipeline's (unchanged) update token, as the
  seed says "the token for a given document is returned after each update or
  management action"; rotating returns the new one.

**Who may register what.** A pipeline whose components run on this deployment's own
machines — a ``command`` (the local launcher) or a ``container`` (docker) component —
is what every job of it runs, so registering one, updating one or enabling one again
needs an admin key: from anyone else it is refused (403) before anything is stored,
and the worker checks the role stored on the execution again. Agave apps, Abaco
actors and services run elsewhere: any key may register those. Disabling or
retiring only takes compute away, so the pipeline's update token is enough.
"""

from __future__ import annotations

from typing import Any

from pipelinejobs.access.keys import ADMIN
from pipelinejobs.adapters.store.base import Document
from pipelinejobs.domain import components, validation
from pipelinejobs.domain.pipelines import PipelineResult
from pipelinejobs.errors import NotFound, PermissionDenied, SchemaValidationError
from pipelinejobs.runtime.actor import Actor, Context, Message, Params


class PipelinesManager(Actor):
    alias = "pipelines-manager"
    description = "Creates and manages Pipelines"
    accepts = ("pipeline_manager_create", "pipeline_manager_update", "pipeline_manager_action")

    def parse(self, message: Any, params: Params) -> Message:
        body = dict(self.body_of(message))
        token = params.get("token")
        if "action" in body:
            if "token" not in body and token:
                body["token"] = token
            schema = (
                "pipeline_manager_update"
                if body["action"] == "update"
                else "pipeline_manager_action"
            )
            self.validated(schema, body)
            require_pipeline_uuid(body["uuid"], schema)
            return Message(str(body["action"]), body, body.get("token"))
        self.validated("pipeline_manager_create", body)
        if not body["components"]:
            # The stored form needs at least one; and every empty pipeline would share
            # one UUID. Refused here, before an execution is stored for it.
            raise SchemaValidationError(
                f"{validation.title('pipeline_manager_create')}: components: a pipeline needs "
                f"at least one component",
                schema=validation.title("pipeline_manager_create"),
                path="components",
            )
        components.check_components(body["components"])
        if token:
            if params.get("uuid"):
                require_pipeline_uuid(params["uuid"], "pipeline_manager_create")
            return Message("update", {"uuid": params.get("uuid"), "body": body}, token)
        return Message("create", body)

    def admit(self, runtime: Any, msg: Message, role: str, owner: str | None = None) -> None:
        require_admin_for_compute(runtime, msg, role)
        if msg.kind == "create":
            # The early answer (409 to the POST); handle's claim is the race-free one.
            runtime.pipelines.check_app_ids(msg.body)

    def handle(self, ctx: Context, msg: Message) -> dict[str, Any]:
        ctx.log.debug(f"Action selected: {msg.kind}")
        require_admin_for_compute(ctx.runtime, msg, ctx.role)
        pipelines, tokens = ctx.runtime.pipelines, ctx.runtime.tokens
        if msg.kind == "create":
            task = f"/actors/v2/{ctx.runtime.actor_id(self.alias)}/executions/{ctx.execution_id}"
            created = pipelines.create(msg.body, task=task)
            uuid = created.pipeline["uuid"]
            # A redelivery of the execution that inserted it must still hand out the
            # token: the first delivery may have died before recording its result.
            if not created.changed and created.pipeline.get("task") != task:
                ctx.log.info(f"Pipeline {uuid} already exists with these components")
                return {
                    "uuid": uuid,
                    "created": False,
                    "status": created.pipeline["status"],
                    "message": "a pipeline with these components already exists; use the "
                    "update token issued when it was created",
                }
            ctx.log.info(f"Created pipeline {uuid}")
            return {
                "uuid": uuid,
                "created": True,
                "token": tokens.update_token(uuid),
                "status": created.pipeline["status"],
            }

        uuid = msg.body.get("uuid") or self._uuid_from_components(ctx, msg.body["body"])
        if msg.kind == "get":
            return {"pipeline": public(pipelines.get(uuid))}

        def authorize(doc: Document) -> None:
            tokens.authorize(
                uuid,
                int(doc.get("token_rotation", 0)),
                msg.token,
                admin_only=msg.kind == "rotate_token",
                action=msg.kind,
            )

        result: PipelineResult
        if msg.kind == "update":
            result = pipelines.update(uuid, msg.body["body"], check=authorize)
        elif msg.kind == "rotate_token":
            result = pipelines.rotate_token(uuid, check=authorize)
            ctx.log.info(f"Rotated the update token of pipeline {uuid}")
            return {
                "uuid": uuid,
                "token": tokens.update_token(uuid, int(result.pipeline["token_rotation"])),
            }
        else:
            result = pipelines.set_status(uuid, msg.kind, check=authorize)
        verb = "Updated" if result.changed else "No change to"
        ctx.log.info(f"{verb} pipeline {uuid} ({msg.kind})")
        return {
            "uuid": uuid,
            "action": msg.kind,
            "changed": result.changed,
            "status": result.pipeline["status"],
            # The seed: "the token for a given document is returned after each update or
            # management action" — unchanged, to the caller that presented a valid one.
            "token": tokens.update_token(uuid, int(result.pipeline.get("token_rotation", 0))),
        }

    @staticmethod
    def _uuid_from_components(ctx: Context, definition: dict[str, Any]) -> str:
        """The seed's update form names the pipeline by its (unchanged) components."""
        uuid = ctx.runtime.pipelines.uuid_for(definition)
        if ctx.runtime.store.get("pipelines", uuid) is None:
            raise NotFound(
                f"no pipeline has these components (they would make {uuid}); "
                f"components are immutable, so send the pipeline's original "
                f"components, or name it with the uuid URL parameter",
                uuid=uuid,
                path="components",
            )
        return uuid


#: The actions that put a pipeline's compute into service, by the verb an error uses.
ADMIN_ONLY = {"create": "registering", "update": "updating", "enable": "enabling"}


def require_admin_for_compute(runtime: Any, msg: Message, role: str) -> None:
    """Refuse a non-admin registering, updating or enabling a pipeline that runs local
    commands or containers (see the module docstring)."""
    if role == ADMIN or msg.kind not in ADMIN_ONLY:
        return
    if msg.kind == "create":
        listed = list(msg.body["components"])
    else:  # the components an update carries, and those of the pipeline it names
        listed = list((msg.body.get("body") or {}).get("components") or [])
        stored = runtime.store.get("pipelines", msg.body["uuid"]) if msg.body.get("uuid") else None
        listed += list(stored["components"]) if stored else []
    for i, component in components.runnable_components(listed):
        kind = components.kind(component)
        raise PermissionDenied(
            f"{ADMIN_ONLY[msg.kind]} a pipeline that runs local commands or containers needs "
            f"an admin key (its {kind} component would run on this deployment's machines)",
            path=f"components/{i}" if msg.kind == "create" else None,
            kind=kind,
            role=role,
        )


def require_pipeline_uuid(value: Any, schema: str) -> None:
    """Refuse a uuid that is not a pipeline's at the boundary.

    The seed form's ``uuid`` URL parameter has no schema of its own (the message
    schemas type the body's ``uuid``); without this a job's or a garbage uuid would be
    stored and only fail in the worker.
    """
    if not validation.is_valid("pipeline_uuid", value):
        raise SchemaValidationError(
            f"{validation.title(schema)}: uuid: {value!r} is not a pipeline UUID "
            f"(a typed UUID with prefix 106)",
            schema=validation.title(schema),
            path="uuid",
        )


def public(doc: Document) -> Document:
    """A pipeline as callers may see it (no token bookkeeping)."""
    return {k: v for k, v in doc.items() if k != "token_rotation"}


ACTOR = PipelinesManager()
