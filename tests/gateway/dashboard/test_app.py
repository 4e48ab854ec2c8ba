"""The dashboard's HTTP side through a real aiohttp server on loopback: login, CSRF, the failed-login limit,
commands through the real command router and audit chain, the event stream, the page's own files."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.commands.audit import verify_log
from gateway.dashboard.app import STATIC
from gateway.service.config import Config

SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # a name, not a location: never fetched


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_nothing_but_the_login_page_without_a_session(make_config: Callable[..., Config], kit: Any) -> None:
    async def scenario() -> None:
        async with kit.served(make_config()) as (client, _):
            assert (await client.get("/api/state")).status == 401
            assert (await client.get("/api/events")).status == 401
            assert (await client.get("/api/history?name=power&role=lamp")).status == 401
            page = await client.get("/", allow_redirects=False)
            assert page.status == 302 and page.headers["Location"] == "/login"
            login = await client.get("/login")
            assert login.status == 200 and 'name="password"' in await login.text()
    run(scenario())


def test_a_login_without_its_csrf_token_is_refused(make_config: Callable[..., Config], kit: Any) -> None:
    async def scenario() -> None:
        async with kit.served(make_config()) as (client, _):
            await client.get("/login")
            answer = await client.post("/login", data={"name": "ana", "password": kit.password},
                                       allow_redirects=False)
            assert answer.status == 403
            assert (await client.get("/api/state")).status == 401
    run(scenario())


def test_a_good_login_replaces_the_session_and_shows_the_street(make_config: Callable[..., Config], kit: Any) -> None:
    async def scenario() -> None:
        async with kit.served(make_config()) as (client, _):
            await client.get("/login")
            before = client.session.cookie_jar.filter_cookies(client.make_url("/"))["se_session"].value
            assert await kit.log_in(client) == 302
            after = client.session.cookie_jar.filter_cookies(client.make_url("/"))["se_session"].value
            assert after != before, "a new session at login (no fixation)"
            state = await (await client.get("/api/state")).json()
            assert state["user"] == "ana" and state["csrf"]
            assert [n["id"] for n in state["nodes"]] == ["lamp-1", "lamp-2", "lamp-3"]
            assert state["units"]["lamp"]["power"] == "W"
            assert state["actions"] == ["dim", "switch", "override", "reboot", "cancel_update"]
            assert state["groups"] == ["north"]
            page = await client.get("/")
            assert page.status == 200 and "/static/app.js" in await page.text()
            assert "default-src 'self'" in page.headers["Content-Security-Policy"]
            assert page.headers["X-Frame-Options"] == "DENY"
    run(scenario())


def test_failed_logins_are_limited_per_address(make_config: Callable[..., Config], kit: Any) -> None:
    async def scenario() -> None:
        async with kit.served(make_config()) as (client, _):
            for _ in range(5):
                assert await kit.log_in(client, password="guess") == 401
            assert await kit.log_in(client) == 429, "even the right password waits once the limit is reached"
            assert (await client.get("/api/state")).status == 401
    run(scenario())


def test_a_wrong_name_is_refused_like_a_wrong_password(make_config: Callable[..., Config], kit: Any) -> None:
    async def scenario() -> None:
        async with kit.served(make_config()) as (client, _):
            csrf = await kit.csrf_of_login_page(client)
            answer = await client.post("/login", data={"name": "mallory", "password": kit.password, "csrf": csrf},
                                       allow_redirects=False)
            assert answer.status == 401 and "Wrong name or password" in await answer.text()
    run(scenario())


def test_a_command_goes_through_the_router_signed_and_audited_with_its_user(
    make_config: Callable[..., Config], kit: Any, tmp_path: Path
) -> None:
    config = make_config()
    stats = kit.stats_for(config)
    for node in stats.nodes.values():
        node.online = False  # nothing answers here: the router refuses, after checking the signature

    async def scenario() -> None:
        async with kit.served(config, stats) as (client, _):
            await kit.log_in(client)
            csrf = (await (await client.get("/api/state")).json())["csrf"]
            body = {"target": "group:north", "action": "dim", "params": {"level": 30}}
            assert (await client.post("/api/command", json=body)).status == 403, "no CSRF token"
            assert (await client.post("/api/command", json=body, headers={"X-CSRF-Token": "x"})).status == 403
            result = await (await client.post("/api/command", json=body, headers={"X-CSRF-Token": csrf})).json()
            assert result["status"] == "rejected" and result["reason"] == "offline_target", result
            actions = await (await client.get("/api/actions")).json()
            assert actions[0]["user"] == "ana" and actions[0]["id"] == result["id"]
            assert actions[0]["status"] == "rejected" and json.loads(actions[0]["params"]) == {"level": 30}
            bad = await client.post("/api/command", json={"target": "lamp-1", "action": "set_unit", "params": {}},
                                    headers={"X-CSRF-Token": csrf})
            assert bad.status == 400 and "not offered" in await bad.text()
            return result["id"]

    command_id = run(scenario())
    audit = tmp_path / "audit.jsonl"
    assert verify_log(audit).ok
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    asked = next(e for e in entries if e["event"] == "dashboard")
    assert (asked["id"], asked["user"], asked["target"], asked["action"]) == (command_id, "ana", "group:north", "dim")
    refused = next(e for e in entries if e["event"] == "refused")
    assert refused["id"] == command_id and refused["reason"] == "offline_target", "verified, then refused"


def test_the_page_cancels_only_a_named_running_roll_out(make_config: Callable[..., Config], kit: Any) -> None:
    config = make_config(key_actions='["dim", "switch", "cancel_update"]')

    async def scenario() -> None:
        async with kit.served(config) as (client, _):
            await kit.log_in(client)
            csrf = (await (await client.get("/api/state")).json())["csrf"]

            async def cancel(params: dict[str, object]) -> dict[str, Any]:
                answer = await client.post("/api/command", json={"target": "all", "action": "cancel_update",
                                                                 "params": params}, headers={"X-CSRF-Token": csrf})
                return dict(await answer.json())

            missing = await cancel({})  # the page sends no id when its field is empty
            assert missing["status"] == "rejected" and missing["reason"] == "bad_parameters", missing
            assert "needs 'rollout'" in missing["detail"], missing
            unknown = await cancel({"rollout": "upd-7"})
            assert unknown["status"] == "rejected" and "no roll-out 'upd-7' is running" in unknown["detail"], unknown
    run(scenario())


def test_the_keys_scope_bounds_what_the_page_may_do(make_config: Callable[..., Config], kit: Any) -> None:
    config = make_config(key_targets='["lamp-1"]')

    async def scenario() -> None:
        async with kit.served(config) as (client, _):
            await kit.log_in(client)
            csrf = (await (await client.get("/api/state")).json())["csrf"]
            result = await (await client.post("/api/command", json={"target": "lamp-2", "action": "dim",
                                                                    "params": {"level": 10}},
                                              headers={"X-CSRF-Token": csrf})).json()
            assert result["status"] == "rejected" and result["reason"] == "out_of_scope", result
    run(scenario())


def test_the_event_stream_starts_with_the_state_then_sends_events(
    make_config: Callable[..., Config], kit: Any
) -> None:
    async def scenario() -> None:
        async with kit.served(make_config()) as (client, dashboard):
            await kit.log_in(client)
            stream = await client.get("/api/events")
            assert stream.headers["Content-Type"].startswith("text/event-stream")

            async def message() -> tuple[str, dict[str, Any]]:
                kind, data = "", ""
                while True:
                    line = (await stream.content.readline()).decode().rstrip("\r\n")
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif not line and kind:
                        return kind, json.loads(data)

            kind, state = await asyncio.wait_for(message(), 30)
            assert kind == "state" and [n["id"] for n in state["nodes"]] == ["lamp-1", "lamp-2", "lamp-3"]
            dashboard.feed.add_event("alarm", node="lamp-2", alarm="supply_loss", raised=True)
            kind, event = await asyncio.wait_for(message(), 30)
            assert kind == "event" and event["node"] == "lamp-2" and event["raised"] is True
            stream.close()
    run(scenario())


def test_the_page_files_come_from_the_package_and_nothing_else(make_config: Callable[..., Config], kit: Any) -> None:
    async def scenario() -> None:
        async with kit.served(make_config()) as (client, _):
            script = await client.get("/static/app.js")
            assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript")
            for name in ("app.js", "index.html", "login.html", "style.css"):
                text = (STATIC / name).read_text().replace(SVG_NAMESPACE, "")
                assert "://" not in text and "//cdn" not in text, f"{name} loads nothing from elsewhere"
            for path in ("/static/..%2Fapp.py", "/static/login.html", "/static/nothing.js"):
                assert (await client.get(path)).status == 404, path
    run(scenario())


def test_an_unusable_history_file_or_key_leaves_the_gateway_running_without_the_page(
    make_config: Callable[..., Config], kit: Any, caplog: Any, tmp_path: Path
) -> None:
    import msgspec

    from gateway.dashboard.server import start_dashboard

    config = make_config(extra=f'history = "{tmp_path / "missing" / "h.sqlite"}"\n')
    assert run(start_dashboard(config, kit.stats_for(config), None, lambda: 0)) is None
    assert "dashboard not started" in caplog.text and "unable to open database" in caplog.text
    caplog.clear()
    config = make_config()
    config = msgspec.structs.replace(
        config, dashboard=msgspec.structs.replace(config.dashboard, key_file=str(tmp_path / "gone.key")))
    router = kit.router_for(config)
    try:
        assert run(start_dashboard(config, kit.stats_for(config), router, lambda: 0)) is None
    finally:
        router.close()
    assert "gone.key" in caplog.text


def test_a_taken_port_leaves_the_gateway_running_without_the_page(
    make_config: Callable[..., Config], kit: Any, caplog: Any
) -> None:
    import socket

    import msgspec

    from gateway.dashboard.server import start_dashboard

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = make_config()
        config = msgspec.structs.replace(
            config, dashboard=msgspec.structs.replace(config.dashboard, port=taken.getsockname()[1]))
        started = run(start_dashboard(config, kit.stats_for(config), None, lambda: 0))
    assert started is None
    assert "dashboard not started" in caplog.text


def test_dashboard_user_prints_an_entry_the_gateway_accepts(
    tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    import io

    from argon2 import PasswordHasher

    from gateway.service.config import parse_config
    from tools.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("a long pass phrase\n"))
    assert main(["dashboard-user", "ana", "--password-stdin"]) == 0
    entry = capsys.readouterr().out
    config = parse_config('site = "s"\ngateway = "g"\n[dashboard]\nenabled = true\n' + entry)
    assert PasswordHasher().verify(config.dashboard.user[0].password, "a long pass phrase")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["dashboard-user", "ana", "--password-stdin"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err


def test_with_a_certificate_the_page_is_served_over_https_with_a_secure_cookie(
    make_config: Callable[..., Config], kit: Any, tmp_path: Path
) -> None:
    import ssl

    import aiohttp

    from gateway.dashboard.server import Dashboard
    from tools.pki import Pki

    pki = Pki(tmp_path)
    cert, key = pki.issue("127.0.0.1", server=True)
    config = make_config(extra=f'tls_cert = "{cert}"\ntls_key = "{key}"\n')

    async def scenario() -> None:
        dashboard = Dashboard(config, kit.stats_for(config), None)
        await dashboard.start()
        try:
            assert dashboard.url.startswith("https://127.0.0.1:")
            trust = ssl.create_default_context(cafile=str(pki.ca))
            async with aiohttp.ClientSession() as session:
                answer = await session.get(dashboard.url + "login", ssl=trust)
                assert answer.status == 200
                cookie = answer.cookies["se_session"]
                assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict"
                try:
                    await session.get(dashboard.url.replace("https", "http") + "login")
                except aiohttp.ClientError:
                    pass  # plain http is not answered
                else:
                    raise AssertionError("plain http answered")
        finally:
            await dashboard.stop()

    run(scenario())
