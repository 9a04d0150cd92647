"""The OpenAPI 3.1 description of every gateway route, generated, never hand-kept.

Request bodies come from the JSON Schemas in ``schemas/`` (bundled by
:mod:`pipelinejobs.gateway.openapi_schemas`): each actor's messages are the union of the
schemas it accepts (``Actor.accepts``), and nonce requests are
``nonce_request.json``. URL parameters come from :mod:`pipelinejobs.gateway.parameters`,
the same declarations the gateway enforces on every request. So the document cannot
promise what the server refuses, or the reverse; a test checks it against the app's
URL map and a schemathesis run against the server.

OpenAPI 3.1 rather than 3.0: its schema dialect is JSON Schema 2020-12, which takes
the draft-07 schemas of ``schemas/`` as they are (``const``, ``propertyNames``,
``if``/``then``, type lists, ``$ref`` with siblings), where 3.0's subset would need
them rewritten and could not say what the boundary accepts.

Messages are documented at one path per actor alias (``/actors/v2/jobs-manager/messages``)
so each gets its own body; the route itself is ``/actors/v2/<actor>/messages`` and takes
an actor's Abaco-style id as well. Every ``/actors/v2`` path is documented again under
Tapis v3's ``/v3/actors`` (the same routes: :mod:`pipelinejobs.gateway.abaco_api`), its
operation ids prefixed ``v3_``, with the ``X-Tapis-Token`` security scheme beside the
bearer key.
"""

from __future__ import annotations

from typing import Any

from pipelinejobs import __version__
from pipelinejobs.gateway import openapi_bulk, openapi_webhooks
from pipelinejobs.gateway import openapi_schemas as oas
from pipelinejobs.gateway.openapi_paths import Operations, v3_paths


def document(runtime: Any) -> dict[str, Any]:
    """The OpenAPI document of the gateway serving ``runtime`` (its settings and
    its actors' ids are part of what the document promises)."""
    builder = Operations(runtime)
    v2 = {**builder.actor_paths(), **builder.abaco_paths()}  # Abaco v2
    actors = "; ".join(f"{a} = {runtime.actor_id(a)}" for a in runtime.actors)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "PipelineJobs",
            "version": __version__,
            "description": "Pipelines and their jobs for a data catalog, on Abaco's actors "
            "API. Every answer is the envelope {status, message, result, version}. "
            f"Actors: {actors}.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key (pipelinejobs keys create)",
                },
                "tapis": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Tapis-Token",
                    "description": "the same API key, as Tapis v3 clients (tapipy) send "
                    "it; a key issued as a JWT (pipelinejobs keys create --jwt) too",
                },
                "nonce": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "x-nonce",
                    "description": "a nonce of the actor (on its /actors/v2/<actor>/ "
                    "routes only); each request uses it once",
                },
            },
            "schemas": {
                **oas.components(),
                **openapi_bulk.schemas(),
                **openapi_webhooks.schemas(),
            },
        },
        "security": [{"bearer": []}, {"tapis": []}],
        "paths": {
            **v2,
            **v3_paths(v2),
            **builder.tapis_paths(),
            **builder.read_paths(),
            **openapi_bulk.paths(builder),
            **openapi_webhooks.paths(builder),
        },
    }
