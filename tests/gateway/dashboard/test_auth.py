"""Passwords, sessions and the failed-login limit, on their own."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, extract_parameters

from gateway.dashboard.auth import LoginLimiter, Sessions, Users, csrf_ok, hash_password
from gateway.service.config_dashboard import DashboardUser


def test_passwords_are_stored_as_argon2id_hashes_and_checked() -> None:
    stored = hash_password("s3cret words")
    assert stored.startswith("$argon2id$") and "s3cret" not in stored
    assert extract_parameters(stored).memory_cost >= 19 * 1024, "at least OWASP's minimum for argon2id"
    # The checks below on cheap parameters: a check follows the parameters its hash carries.
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("s3cret words")
    users = Users([DashboardUser(name="ana", password=cheap)])
    assert users.check("ana", "s3cret words")
    assert not users.check("ana", "s3cret word")
    assert not users.check("bob", "s3cret words")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_sessions_expire_when_unused_and_end_at_logout() -> None:
    clock = Clock()
    sessions = Sessions(lifetime=60.0, clock=clock)
    session = sessions.new("ana")
    clock.now = 50.0
    assert sessions.get(session.token) is session, "use refreshes it"
    clock.now = 100.0
    assert sessions.get(session.token) is session
    clock.now = 161.0
    assert sessions.get(session.token) is None
    other = sessions.new("ana")
    sessions.end(other.token)
    assert sessions.get(other.token) is None
    assert sessions.get(None) is None


@pytest.mark.parametrize(("sent", "ok"), [(None, False), ("", False), ("wrong", False), ("RIGHT", True)])
def test_csrf_tokens_must_match_the_session(sent: str | None, ok: bool) -> None:
    session = Sessions(60.0).new()
    assert csrf_ok(session, session.csrf if sent == "RIGHT" else sent) is ok
    assert not csrf_ok(None, session.csrf)


def test_the_limit_counts_failures_per_address_within_the_window() -> None:
    clock = Clock()
    limiter = LoginLimiter(max_failures=3, window=100.0, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("10.0.0.7") == 0
        limiter.failed("10.0.0.7")
        clock.now += 10
    assert limiter.retry_after("10.0.0.7") == pytest.approx(100.0 - 30.0)
    assert limiter.retry_after("10.0.0.8") == 0, "other addresses are not held back"
    clock.now = 100.5
    assert limiter.retry_after("10.0.0.7") == 0, "the first failure left the window"
    limiter.failed("10.0.0.7")
    limiter.succeeded("10.0.0.7")
    assert limiter.retry_after("10.0.0.7") == 0
