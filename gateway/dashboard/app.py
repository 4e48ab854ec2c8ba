"""The dashboard's HTTP side (aiohttp): pages, login, the live event stream, history, commands.

Routes:

- ``GET /login``, ``POST /login`` (form: ``name``, ``password``, ``csrf``), ``POST /logout``;
- ``GET /``: the page (after login; otherwise a redirect to ``/login``), ``GET /static/...``: its files;
- ``GET /api/state``: the whole view, the recent events, the energy saved, the user and the session's CSRF token;
- ``GET /api/events``: server-sent events (``state``, then ``update``, ``event`` and ``energy``; see
  :mod:`gateway.dashboard.feed`);
- ``GET /api/history?name=power&role=lamp`` (the street's total) or ``...&node=lamp-3`` (one node);
- ``GET /api/actions``: the last commands given from the page, who gave them and their results;
- ``POST /api/command`` (JSON ``{"target", "action", "params"}``, header ``X-CSRF-Token``).

Every ``/api`` route answers 401 without a session, and every POST 403 without its session's CSRF
token. Responses carry a Content-Security-Policy that allows only the gateway's own files (the page
has no inline script), and the page may not be framed.
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response

from gateway.commands.parse import parse_target
from gateway.dashboard.auth import LoginLimiter, Session, Sessions, Users, csrf_ok
from gateway.dashboard.commands import PAGE_ACTIONS, PageOperator
from gateway.dashboard.feed import Feed
from gateway.dashboard.history import History

log = logging.getLogger(__name__)

COOKIE = "se_session"
STATIC = resources.files("gateway.dashboard") / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

FEED: web.AppKey[Feed] = web.AppKey("feed", Feed)
HISTORY: web.AppKey[History] = web.AppKey("history", History)
OPERATOR: web.AppKey[PageOperator | None] = web.AppKey("operator", PageOperator)
USERS: web.AppKey[Users] = web.AppKey("users", Users)
SESSIONS: web.AppKey[Sessions] = web.AppKey("sessions", Sessions)
LIMITER: web.AppKey[LoginLimiter] = web.AppKey("limiter", LoginLimiter)
SECURE: web.AppKey[bool] = web.AppKey("secure", bool)


def make_app(
    *, feed: Feed, history: History, users: Users, sessions: Sessions, limiter: LoginLimiter,
    operator: PageOperator | None, secure: bool,
) -> web.Application:
    """The dashboard application (``secure``: served over https, so its cookie is Secure)."""
    app = web.Application(middlewares=[_headers])
    app[FEED], app[HISTORY], app[USERS], app[SESSIONS] = feed, history, users, sessions
    app[LIMITER], app[OPERATOR], app[SECURE] = limiter, operator, secure
    app.router.add_get("/", index)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/history", history_series)
    app.router.add_get("/api/actions", actions)
    app.router.add_post("/api/command", command)
    app.router.add_get("/static/{name}", static)
    return app


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:  # the event stream sends its head itself
        response.headers.update(SECURITY_HEADERS)
    return response


def _session(request: web.Request) -> Session | None:
    return request.app[SESSIONS].get(request.cookies.get(COOKIE))


def _user(request: web.Request) -> Session:
    """The logged-in session, or 401."""
    session = _session(request)
    if session is None or session.user is None:
        raise web.HTTPUnauthorized(text="log in first\n")
    return session


def _set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    response.set_cookie(COOKIE, session.token, httponly=True, samesite="Strict", path="/",
                        secure=request.app[SECURE])


@functools.lru_cache(maxsize=16)  # bounded: names come from requests
def _file(name: str) -> bytes | None:
    """A file of the page, read once (they ship with the package and do not change while it runs)."""
    entry = STATIC / name
    return entry.read_bytes() if entry.is_file() else None


def _asset(name: str) -> str:
    return (_file(name) or b"").decode("utf-8")


async def index(request: web.Request) -> web.StreamResponse:
    """The page, once logged in."""
    session = _session(request)
    if session is None or session.user is None:
        raise web.HTTPFound("/login")
    return web.Response(text=_asset("index.html"), content_type="text/html")


async def login_page(request: web.Request, message: str = "", status: int = 200) -> web.Response:
    """The login form, with a CSRF token of a fresh (anonymous) session."""
    session = _session(request) or request.app[SESSIONS].new()
    text = (_asset("login.html").replace("{{csrf}}", html.escape(session.csrf))
            .replace("{{message}}", html.escape(message)))
    response = web.Response(text=text, content_type="text/html", status=status)
    _set_cookie(request, response, session)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    """Check the form; on success a new logged-in session and a redirect to the page."""
    limiter = request.app[LIMITER]
    address = request.remote or "?"
    form = await request.post()
    session = _session(request)
    if not csrf_ok(session, str(form.get("csrf", ""))):
        raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the login page\n")
    wait = limiter.retry_after(address)
    if wait > 0:
        log.warning("dashboard: login from %s refused: too many failures", address)
        return await login_page(request, f"Too many failed logins: try again in {wait:.0f} s.", 429)
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    # Argon2 costs tens of milliseconds of CPU: off the event loop.
    if not await asyncio.to_thread(request.app[USERS].check, name, password):
        limiter.failed(address)
        log.warning("dashboard: failed login for %r from %s", name, address)
        return await login_page(request, "Wrong name or password.", 401)
    limiter.succeeded(address)
    assert session is not None
    request.app[SESSIONS].end(session.token)
    fresh = request.app[SESSIONS].new(name)
    log.info("dashboard: %s logged in from %s", name, address)
    response = web.HTTPFound("/")
    _set_cookie(request, response, fresh)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """End the session."""
    session = _session(request)
    form = await request.post()
    if not csrf_ok(session, str(form.get("csrf", "")) or request.headers.get("X-CSRF-Token")):
        raise web.HTTPForbidden(text="missing or wrong CSRF token\n")
    assert session is not None
    request.app[SESSIONS].end(session.token)
    raise web.HTTPFound("/login")


async def state(request: web.Request) -> web.Response:
    """The whole view now, with the recent events, the user, the CSRF token and what the page may do."""
    session = _user(request)
    feed = request.app[FEED]
    operator = request.app[OPERATOR]
    return web.json_response({**feed.view, "events": list(feed.events), "energy": feed.energy,
                              "user": session.user, "csrf": session.csrf,
                              "actions": list(PAGE_ACTIONS) if operator is not None else [],
                              "groups": sorted(feed.config.groups)})


async def events(request: web.Request) -> web.StreamResponse:
    """The live stream: ``state`` first, then ``update`` and ``event`` messages as they come."""
    _user(request)
    feed = request.app[FEED]
    queue = feed.subscribe()
    stream = None
    try:
        async with sse_response(request, headers={"Cache-Control": "no-store"}) as stream:
            while True:
                message = await queue.get()
                if message is None:  # dropped for falling behind, or the gateway is stopping
                    break
                kind, data = message
                await stream.send(data, event=kind)
    except ConnectionResetError:  # the browser went away
        pass
    finally:
        feed.unsubscribe(queue)
    return stream or web.Response(status=204)


async def history_series(request: web.Request) -> web.Response:
    """One plotted series: ``{"name", "points": [[ts, value], ...]}``."""
    _user(request)
    name = request.query.get("name", "")
    node, role = request.query.get("node"), request.query.get("role")
    if not name or (node is None) == (role is None):
        raise web.HTTPBadRequest(text="give name, and either node or role\n")
    points = await asyncio.to_thread(request.app[HISTORY].series, name, node=node, role=role)
    return web.json_response({"name": name, "node": node, "role": role, "points": points})


async def actions(request: web.Request) -> web.Response:
    """The last commands given from the page."""
    _user(request)
    return web.json_response(await asyncio.to_thread(request.app[HISTORY].actions))


async def command(request: web.Request) -> web.Response:
    """Give one command as the logged-in user; answers its result once the nodes were read back."""
    session = _user(request)
    if not csrf_ok(session, request.headers.get("X-CSRF-Token")):
        raise web.HTTPForbidden(text="missing or wrong CSRF token\n")
    operator = request.app[OPERATOR]
    if operator is None:
        raise web.HTTPConflict(text="this gateway's dashboard has no operator key: it shows, it cannot act\n")
    body = await _json_body(request)
    target, action, params = body.get("target"), body.get("action"), body.get("params", {})
    if not isinstance(target, str) or not isinstance(action, str) or not isinstance(params, dict):
        raise web.HTTPBadRequest(text='expected {"target": str, "action": str, "params": {...}}\n')
    if action not in PAGE_ACTIONS:
        raise web.HTTPBadRequest(text=f"action {action!r} is not offered here ({', '.join(PAGE_ACTIONS)})\n")
    try:
        parse_target(target)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None
    assert session.user is not None
    feed = request.app[FEED]
    feed.add_event("command", user=session.user, target=target, action=action, params=params)
    result = await operator.run(session.user, target, action, params)
    feed.poke()
    return web.json_response(result)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body is not JSON\n") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body is not a JSON object\n")
    return body


async def static(request: web.Request) -> web.Response:
    """The page's own files (no CDN: everything it loads comes from here)."""
    name = request.match_info["name"]
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    kind = next((t for ext, t in types.items() if name.endswith(ext)), None)
    body = None if kind is None or "/" in name else _file(name)
    if body is None:
        raise web.HTTPNotFound()
    return web.Response(body=body, content_type=kind, headers={"Cache-Control": "max-age=300"})
