"""The console's blueprint: sign-in, sessions, CSRF and the security headers.

**Sign-in** takes a bearer key once (a form POST; the key never travels in a URL) and
opens a server-side session (:mod:`pipelinejobs.access.sessions`): the cookie holds a
random secret, the store only its hash with the key's id — never the key. Each
request re-reads the key by its id, so a revoked key is signed out at once.

The cookie (``pj_session``, path ``/ui/``) is ``HttpOnly`` (no script reads it),
``SameSite=Strict`` (no other site's page sends it) and ``Secure`` when the request
came over TLS — directly, or through a proxy listed in ``gateway.trusted_proxies``
whose ``X-Forwarded-Proto`` says so.

**CSRF**: every POST carries the session's CSRF token in a hidden field and is
refused (403) without it; a POST whose ``Origin`` is another site is refused too. The
sign-in form, made before there is a session, pairs its token with a short-lived
cookie of its own (double submit).

**Headers** on every console response: a Content-Security-Policy allowing scripts,
styles, images and requests from this origin only — no inline script or style, no
framing, no plugins, forms posting only here — plus ``X-Content-Type-Options:
nosniff``, ``Referrer-Policy: same-origin`` (a POST still says where it came from, to
this site only), ``X-Frame-Options: DENY`` and, for pages, ``Cache-Control: no-store``
(they hold job data).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from pipelinejobs.access.keys import Keys, Principal
from pipelinejobs.access.sessions import Session, Sessions
from pipelinejobs.console import views
from pipelinejobs.errors import (
    AuthError,
    MissingCredential,
    PermissionDenied,
    PipelineJobsError,
    http_status,
)

log = logging.getLogger("pipelinejobs.console")

PREFIX = "/ui"
COOKIE = "pj_session"
SIGNIN_COOKIE = "pj_signin"
#: Seconds the sign-in form's own CSRF cookie lasts.
SIGNIN_TTL = 1800
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
#: Endpoints open without a session.
PUBLIC = frozenset({"console.sign_in", "console.static", "console.api_reference"})

bp = Blueprint(
    "console",
    __name__,
    url_prefix=PREFIX,
    template_folder="templates",
    static_folder="static",
)


@dataclass
class Console:
    """What the console keeps per app: its sessions and its short-lived caches."""

    gateway: Any  #: the gateway's state (``app.config["PIPELINEJOBS"]``)
    caches: dict[str, tuple[float, Any]] = field(default_factory=dict)
    #: Events counted per ended minute (by its start), kept for the overview's hour.
    minutes: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Seconds an overview's figures may be reused (0: computed for every request).
    cache_ttl: float = 2.0

    def __post_init__(self) -> None:
        config = self.gateway.config
        self.runtime = self.gateway.runtime
        self.store = self.gateway.store
        keys: Keys = self.gateway.keys
        self.sessions = Sessions(
            self.store, keys, ttl=config.gateway.session_ttl, clock=self.runtime.clock
        )

    def cached(self, name: str, ttl: float, make: Callable[[], Any]) -> Any:
        """``make()``, reused for ``ttl`` seconds (per process)."""
        if ttl > 0:
            with self.lock:
                hit = self.caches.get(name)
            if hit is not None and time.monotonic() - hit[0] < ttl:
                return hit[1]
        value = make()
        if ttl > 0:
            with self.lock:
                self.caches[name] = (time.monotonic(), value)
        return value


def console() -> Console:
    found: Console = current_app.extensions["pipelinejobs.console"]
    return found


def principal() -> Principal:
    """Who is signed in (set for every page but sign-in)."""
    found: Principal = g.console_session.principal
    return found


def session() -> Session:
    found: Session = g.console_session
    return found


def secure_request() -> bool:
    """Whether this request reached us over TLS: directly, or through a proxy that
    ``gateway.trusted_proxies`` lists saying so in ``X-Forwarded-Proto`` (the value it
    added: the last). Anyone else's header is not believed."""
    if request.is_secure:
        return True
    networks = console().gateway.config.trusted_proxies
    if not networks or not request.remote_addr:
        return False
    try:
        peer = ipaddress.ip_address(request.remote_addr)
    except ValueError:
        return False
    if not any(peer in network for network in networks):
        return False
    proto = (request.headers.get("X-Forwarded-Proto") or "").split(",")[-1].strip()
    return proto.lower() == "https"


def _cookie(response: BaseResponse, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=f"{PREFIX}/",
        httponly=True,
        samesite="Strict",
        secure=secure_request(),
    )


def _same_origin() -> bool:
    """A POST's ``Origin`` (or, without it, ``Referer``) names this site, or neither is
    sent (some clients send none; the CSRF token still guards them)."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin or origin == "null":
        return origin != "null"
    parts = urlsplit(origin)
    return parts.netloc == request.host


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if target and target.startswith(f"{PREFIX}/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and "\\" not in target:
            return target
    return f"{PREFIX}/"


def wants_json() -> bool:
    return request.path.startswith(f"{PREFIX}/live/") or request.path.endswith("/log")


@bp.before_request
def require_session() -> Any:
    """Every page but sign-in needs a session; every POST its CSRF token."""
    if request.endpoint in PUBLIC:
        return None
    try:
        g.console_session = console().sessions.resolve(request.cookies.get(COOKIE, ""))
    except AuthError as exc:
        response: BaseResponse
        if wants_json():
            response = make_response({"error": exc.message, "signed_in": False}, 401)
        else:
            target = request.full_path.rstrip("?") if request.method == "GET" else None
            response = redirect(url_for("console.sign_in", next=safe_next(target)))
        if request.cookies.get(COOKIE):
            response.delete_cookie(COOKIE, path=f"{PREFIX}/")
        return response
    if request.method == "POST":
        if not _same_origin():
            raise PermissionDenied("this form was posted from another site; refused")
        if not Sessions.csrf_matches(session(), request.form.get("csrf")):
            raise PermissionDenied(
                "the form's CSRF token is missing or not this session's; reload the page "
                "and try again"
            )
    return None


@bp.after_request
def security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(Exception)
def refused(exc: Exception) -> Any:
    """An error as a page (or JSON for the live endpoints), its message from the one
    error hierarchy; never a traceback (an unexpected error is logged, as the gateway
    logs its own)."""
    if isinstance(exc, PipelineJobsError):
        code, kind, message = http_status(exc), type(exc).__name__, exc.message
    elif isinstance(exc, HTTPException):
        code, kind = exc.code or 500, type(exc).__name__
        message = exc.description or exc.name
    else:
        log.exception("unexpected error on %s %s", request.method, request.path)
        code, kind, message = 500, "InternalError", "internal error; it has been logged"
    if wants_json():
        return {"error": message, "kind": kind}, code
    return (
        render("console/error.html", title=f"{code} {kind}", code=code, kind=kind, message=message),
        code,
    )


def render(template: str, **context: Any) -> str:
    """A console page, with what every page shows (who is signed in, the CSRF token)."""
    current = getattr(g, "console_session", None)
    context.setdefault("here", request.endpoint)
    return render_template(
        template,
        poll_ms=int(console().gateway.config.gateway.console_poll * 1000),
        signed_in=current.principal if current else None,
        csrf=current.csrf if current else "",
        **context,
    )


# -- sign-in and sign-out ---------------------------------------------------------------


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        token = secrets.token_urlsafe(24)
        page = make_response(
            render(
                "console/signin.html",
                title="Sign in",
                next=target,
                signin_token=token,
                signed_out=request.args.get("signed_out") == "1",
            )
        )
        _cookie(page, SIGNIN_COOKIE, token, SIGNIN_TTL)
        return page
    paired = request.cookies.get(SIGNIN_COOKIE, "")
    sent = request.form.get("csrf", "")
    if not _same_origin() or not paired or not secrets.compare_digest(paired, sent):
        raise PermissionDenied(
            "the sign-in form expired or came from another site; open the sign-in page again"
        )
    key = request.form.get("key", "").strip()
    if key.lower().startswith("bearer "):
        key = key[7:].strip()
    try:
        if not key:
            raise MissingCredential("paste an API key (from `pipelinejobs keys create`)")
        secret, _ = console().sessions.open(key)
    except AuthError as exc:
        again = render(
            "console/signin.html", title="Sign in", next=target, signin_token=paired, error=exc
        )
        return again, http_status(exc)
    response = redirect(target)
    _cookie(response, COOKIE, secret, int(console().sessions.ttl))
    response.delete_cookie(SIGNIN_COOKIE, path=f"{PREFIX}/")
    return response


@bp.post("/sign-out")
def sign_out() -> Any:
    console().sessions.close(request.cookies.get(COOKIE, ""))
    response = redirect(url_for("console.sign_in", signed_out="1"))
    response.delete_cookie(COOKIE, path=f"{PREFIX}/", httponly=True, samesite="Strict")
    return response


def hidden_csrf() -> Markup:
    """The hidden CSRF field of a form (for templates)."""
    return Markup('<input type="hidden" name="csrf" value="{}">').format(session().csrf)


# -- template filters (escaping stays Jinja's: these return plain text) ------------------


bp.add_app_template_filter(views.age, "pj_age")
bp.add_app_template_filter(views.size, "pj_size")
bp.add_app_template_filter(views.job_name, "pj_name")
bp.add_app_template_filter(views.public, "pj_public")
bp.add_app_template_filter(views.failure_reason, "pj_reason")
bp.add_app_template_filter(views.event_summary, "pj_summary")
bp.add_app_template_filter(views.mask_text, "pj_mask")


@bp.app_template_global("pj_base")
def base_url() -> str:
    """The console's root URL path (under the app's script root, if mounted below one)."""
    return f"{request.script_root}{PREFIX}"


@bp.app_template_filter("pj_json")
def _json(value: Any) -> str:
    """Pretty JSON as text (autoescaped where it is inserted), secrets masked."""
    return json.dumps(
        views.redact(value), indent=2, sort_keys=True, ensure_ascii=False, default=str
    )


@bp.app_template_filter("pj_short")
def _short(uuid: Any) -> str:
    text = str(uuid or "")
    return text[:13] + "…" if len(text) > 14 else text
