"""The HTTP API's reference as a page (``/ui/api``; ``/docs`` leads to it).

Rendered from the same OpenAPI document ``/openapi.json`` serves — which is generated
from the message schemas and the routes' declared parameters — so the page cannot
drift from what the gateway accepts. It asks the app for that document through the
route's view function rather than importing the gateway (the console sits below it).
No sign-in is needed, as for ``/openapi.json``: it describes the API, it holds no data.
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from pipelinejobs.console.web import bp, render

METHODS = ("get", "post", "put", "patch", "delete")


def operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every operation of ``spec`` as one row, grouped by its first tag, in path order."""
    rows: list[dict[str, Any]] = []
    for path, item in spec.get("paths", {}).items():
        shared = item.get("parameters", [])
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            params = [p for p in [*shared, *op.get("parameters", [])] if "$ref" not in p]
            body = op.get("requestBody", {}).get("content", {})
            rows.append(
                {
                    "tag": (op.get("tags") or ["other"])[0],
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "parameters": params,
                    "body": sorted(body),
                    "responses": sorted(op.get("responses", {}).items()),
                    "auth": bool(op.get("security", spec.get("security"))),
                }
            )
    rows.sort(key=lambda r: (r["tag"], r["path"], METHODS.index(r["method"].lower())))
    return rows


@bp.get("/api")
def api_reference() -> Any:
    made: Any = current_app.view_functions["openapi"]()  # the gateway's /openapi.json
    spec: dict[str, Any] = dict(made)
    info = spec.get("info", {})
    return render(
        "console/api.html",
        title="HTTP API",
        info=info,
        version=spec.get("openapi", ""),
        operations=operations(spec),
    )
