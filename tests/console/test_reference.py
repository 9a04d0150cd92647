"""The API reference page: every operation of the OpenAPI document, nothing invented."""

from __future__ import annotations

from flask import Flask

from tests.console.conftest import text_of
from tests.gateway.conftest import build as build  # noqa: F401  (a fixture)


def test_docs_leads_to_the_reference_without_credentials(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/docs").headers["Location"] == "/ui/api"
    page = client.get("/ui/api")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]


def test_every_operation_of_the_openapi_document_is_listed(app: Flask) -> None:
    client = app.test_client()
    spec = client.get("/openapi.json").get_json()
    text = text_of(client.get("/ui/api"))
    listed = 0
    for path, item in spec["paths"].items():
        for method in ("get", "post", "put", "patch", "delete"):
            if method in item:
                listed += 1
                assert path in text, path
    assert listed > 10
    # Rows are method + path; count the method cells the page made.
    html = client.get("/ui/api").get_data(as_text=True)
    rows = sum(html.count(f'<td class="mono">{m.upper()}</td>') for m in ("get", "post", "delete"))
    assert rows == listed
