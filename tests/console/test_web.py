"""Signing in and out of the console, its session cookie, CSRF and its headers."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipelinejobs.access.keys import digest
from pipelinejobs.gateway import Gateway
from pipelinejobs.runtime.dispatch import Runtime
from tests.console.conftest import (
    SAME_ORIGIN,
    Keys,
    a_job,
    csrf_of,
    form_token,
    sign_in,
    signed_in,
    text_of,
)
from tests.gateway.conftest import build as build  # noqa: F401  (a fixture)


def cookie_header(response, name: str) -> str:
    found = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(f"{name}=")]
    assert found, f"no {name} cookie set"
    return str(found[0])


def test_the_root_leads_to_the_console_and_the_console_to_sign_in(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/").headers["Location"] == "/ui/"
    page = client.get("/ui/jobs?state=FAILED")
    assert page.status_code == 302
    assert page.headers["Location"].startswith("/ui/sign-in?next=")
    assert page.headers["Location"] == "/ui/sign-in?next=/ui/jobs?state%3DFAILED"


def test_signing_in_sets_a_strict_httponly_session_cookie(app: Flask, keys: Keys) -> None:
    client = app.test_client()
    answer = sign_in(client, keys.admin)
    assert answer.status_code == 302 and answer.headers["Location"] == "/ui/"
    cookie = cookie_header(answer, "pj_session")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui/" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    assert keys.admin not in cookie
    page = client.get("/ui/")
    assert page.status_code == 200
    assert "admin key" in text_of(page)


def test_the_store_keeps_neither_the_key_nor_the_cookies_secret(
    app: Flask, gateway: Gateway, keys: Keys
) -> None:
    client = app.test_client()
    answer = sign_in(client, keys.user)
    secret = cookie_header(answer, "pj_session").split(";")[0].split("=", 1)[1]
    sessions = gateway.store.find("sessions", limit=10).items
    assert len(sessions) == 1
    stored = json.dumps(sessions)
    assert keys.user not in stored and secret not in stored
    assert sessions[0]["id"] == digest(secret)
    assert sessions[0]["key_id"] == digest(keys.user)


def test_the_cookie_is_secure_over_tls_and_behind_a_trusted_proxy(build, keys: Keys) -> None:
    _, app = build()
    gateway = app.config["PIPELINEJOBS"]
    key, _ = gateway.keys.create("admin")
    tls = app.test_client()
    page = tls.get("/ui/sign-in", base_url="https://localhost")
    answer = tls.post(
        "/ui/sign-in",
        base_url="https://localhost",
        data={"csrf": form_token(text_of(page)), "key": key},
        headers={"Origin": "https://localhost"},
    )
    assert "Secure" in cookie_header(answer, "pj_session")

    forwarded = {"X-Forwarded-Proto": "https"}
    untrusted = app.test_client()
    page = untrusted.get("/ui/sign-in", headers=forwarded)
    assert "Secure" not in cookie_header(page, "pj_signin")  # not believed by default

    _, proxied_app = build(gateway={"trusted_proxies": "127.0.0.1"})  # the test client's
    proxied = proxied_app.test_client()
    page = proxied.get("/ui/sign-in", headers=forwarded)
    assert "Secure" in cookie_header(page, "pj_signin")


def test_a_wrong_key_is_refused_and_says_why(app: Flask) -> None:
    client = app.test_client()
    answer = sign_in(client, "0" * 32)
    assert answer.status_code == 401
    assert "the bearer key is not known" in text_of(answer)
    assert not [c for c in answer.headers.getlist("Set-Cookie") if c.startswith("pj_session=")]


def test_sign_in_needs_its_form_token_and_this_sites_origin(app: Flask, keys: Keys) -> None:
    client = app.test_client()
    page = client.get("/ui/sign-in")
    token = form_token(text_of(page))
    forged = client.post("/ui/sign-in", data={"csrf": "x" * 32, "key": keys.admin})
    assert forged.status_code == 403
    other_site = client.post(
        "/ui/sign-in",
        data={"csrf": token, "key": keys.admin},
        headers={"Origin": "https://evil.example"},
    )
    assert other_site.status_code == 403
    fresh = app.test_client()  # no sign-in cookie to pair the token with
    assert fresh.post("/ui/sign-in", data={"csrf": token, "key": keys.admin}).status_code == 403


def test_after_sign_in_it_goes_where_it_was_asked_but_never_off_site(
    app: Flask, keys: Keys
) -> None:
    for target, expected in (
        ("/ui/jobs?state=FAILED", "/ui/jobs?state=FAILED"),
        ("https://evil.example/ui/", "/ui/"),
        ("//evil.example/ui/", "/ui/"),
        ("/ui/\\evil", "/ui/"),
        ("/metrics", "/ui/"),
    ):
        client = app.test_client()
        page = client.get("/ui/sign-in")
        answer = client.post(
            "/ui/sign-in",
            data={"csrf": form_token(text_of(page)), "key": keys.user, "next": target},
            headers=SAME_ORIGIN,
        )
        assert answer.headers["Location"] == expected, target


def test_every_console_answer_has_a_strict_content_security_policy(
    admin: FlaskClient, runtime: Runtime
) -> None:
    job = a_job(runtime)
    for url in ("/ui/", "/ui/jobs", f"/ui/jobs/{job['uuid']}", "/ui/static/console.js"):
        answer = admin.get(url)
        assert answer.status_code == 200, url
        csp = answer.headers["Content-Security-Policy"]
        policy = dict(part.strip().split(" ", 1) for part in csp.split(";"))
        assert policy["default-src"] == "'self'"
        assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
        assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "same-origin"
        assert answer.headers["X-Frame-Options"] == "DENY"
        answer.close()  # a static file's response holds the file open
    assert admin.get("/ui/").headers["Cache-Control"] == "no-store"
    assert admin.get("/ui/sign-in").headers["Content-Security-Policy"]


def test_pages_hold_no_inline_script_or_style(admin: FlaskClient, runtime: Runtime) -> None:
    job = a_job(runtime)
    for url in ("/ui/", "/ui/jobs", f"/ui/jobs/{job['uuid']}", "/ui/pipelines", "/ui/sign-in"):
        html = text_of(admin.get(url))
        assert "<script>" not in html and "<style" not in html and " style=" not in html
        assert " onclick=" not in html and "javascript:" not in html
        assert '<script src="/ui/static/console.js" defer></script>' in html or "sign-in" in url


def test_a_post_without_the_sessions_csrf_token_is_refused(
    admin: FlaskClient, runtime: Runtime, keys: Keys
) -> None:
    job = a_job(runtime)
    url = f"/ui/jobs/{job['uuid']}/actions/cancel"
    for data in ({"reason": "x"}, {"reason": "x", "csrf": "not-the-token"}):
        answer = admin.post(url, data=data, headers=SAME_ORIGIN)
        assert answer.status_code == 403
        assert "CSRF token" in text_of(answer)
    # ...and one from another site, even with the token.
    token = csrf_of(admin)
    answer = admin.post(
        url, data={"reason": "x", "csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert answer.status_code == 403
    assert runtime.jobs.get(job["uuid"])["state"] == "CREATED"
    assert runtime.store.count("executions") == 0
    # Another session's token is not this one's.
    other = csrf_of(signed_in(admin.application, keys.admin))
    answer = admin.post(url, data={"reason": "x", "csrf": other}, headers=SAME_ORIGIN)
    assert answer.status_code == 403


def test_signing_out_ends_the_session_on_the_server(admin: FlaskClient, gateway: Gateway) -> None:
    cookie = admin.get_cookie("pj_session", path="/ui/")
    assert cookie is not None
    secret = cookie.value
    answer = admin.post("/ui/sign-out", data={"csrf": csrf_of(admin)}, headers=SAME_ORIGIN)
    assert answer.status_code == 302 and "signed_out=1" in answer.headers["Location"]
    assert "pj_session=;" in cookie_header(answer, "pj_session")
    assert gateway.store.get("sessions", digest(secret)) is None
    # The old cookie, replayed, opens nothing.
    replay = admin.application.test_client()
    replay.set_cookie("pj_session", secret, path="/ui/")
    assert replay.get("/ui/").status_code == 302
    assert replay.get("/ui/live/overview").status_code == 401


def test_sign_out_needs_the_csrf_token(admin: FlaskClient) -> None:
    assert admin.post("/ui/sign-out", headers=SAME_ORIGIN).status_code == 403
    assert admin.get("/ui/").status_code == 200


def test_a_revoked_key_is_signed_out_at_its_next_request(
    admin: FlaskClient, gateway: Gateway, keys: Keys
) -> None:
    assert admin.get("/ui/").status_code == 200
    gateway.keys.revoke(digest(keys.admin)[:12])
    assert admin.get("/ui/").status_code == 302
    assert admin.get("/ui/live/overview").status_code == 401
    assert gateway.store.count("sessions") == 0


def test_an_expired_session_is_gone(build) -> None:
    from tests.support import FakeClock

    clock = FakeClock()
    _, app = build(clock=clock, gateway={"session_ttl": 60.0})
    key, _ = app.config["PIPELINEJOBS"].keys.create("user")
    client = signed_in(app, key)
    assert client.get("/ui/").status_code == 200
    clock.advance(61)
    assert client.get("/ui/").status_code == 302


@pytest.mark.parametrize("url", ["/ui/live/overview", "/ui/live/jobs", "/ui/jobs/x/log"])
def test_live_endpoints_answer_401_json_when_signed_out(app: Flask, url: str) -> None:
    answer = app.test_client().get(url)
    assert answer.status_code == 401
    assert answer.get_json()["signed_in"] is False
