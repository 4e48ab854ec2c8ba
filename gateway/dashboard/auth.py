"""Who may use the dashboard: argon2 password check, server-side sessions, CSRF tokens, a failed-login limit.

- Passwords are checked against Argon2id hashes (argon2-cffi) from ``[[dashboard.user]]``; a wrong user
  name costs the same hash as a wrong password, so timing does not tell which names exist.
- A session is a random token (the ``se_session`` cookie: HttpOnly, SameSite=Strict, Secure over https)
  that names a server-side record: the user (None before login) and the session's CSRF token. Logging
  in replaces the session (no fixation); it ends after ``session_hours`` without use or on logout.
- Every state-changing request (POST) must carry the session's CSRF token (form field ``csrf`` or
  header ``X-CSRF-Token``); the comparison is constant-time.
- Failed logins are limited per client address: :data:`MAX_FAILURES` within :data:`FAILURE_WINDOW`
  seconds, then every login from that address is refused until the window has passed.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.service.config_dashboard import DashboardUser

MAX_FAILURES = 5
"""Failed logins from one address within :data:`FAILURE_WINDOW` after which its logins are refused."""
FAILURE_WINDOW = 300.0
"""Seconds over which failed logins are counted."""
MAX_ADDRESSES = 10_000
"""Addresses with failed logins above which those without recent failures are forgotten."""
MAX_SESSIONS = 1000
"""Sessions kept at most (the oldest unused go first): anonymous visitors cannot grow memory."""


def hash_password(password: str) -> str:
    """The Argon2id hash of ``password`` to put in ``[[dashboard.user]] password``."""
    return PasswordHasher().hash(password)


class Users:
    """The dashboard's user list and its password check."""

    def __init__(self, users: Iterable[DashboardUser]) -> None:
        self._hashes = {u.name: u.password for u in users}
        self._hasher = PasswordHasher()
        # Checked for unknown names, so that they cost the same time as known ones: made with the
        # parameters of a real user's hash (a verification costs what its hash's parameters say).
        decoy_hasher = self._hasher
        for stored in self._hashes.values():
            with contextlib.suppress(InvalidHashError):
                decoy_hasher = PasswordHasher.from_parameters(extract_parameters(stored))
                break
        self._decoy = decoy_hasher.hash(secrets.token_hex(16))

    def check(self, name: str, password: str) -> bool:
        """Whether ``password`` is ``name``'s password."""
        stored = self._hashes.get(name)
        try:
            return self._hasher.verify(stored or self._decoy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False


@dataclass
class Session:
    """One browser's session: its user once logged in, and the token its forms must carry."""

    token: str
    csrf: str
    user: str | None = None
    last_used: float = field(default_factory=time.monotonic)


class Sessions:
    """Server-side sessions by token.

    Args:
        lifetime: seconds a session lasts without use.
        clock: monotonic clock.
    """

    def __init__(self, lifetime: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self.clock = clock
        self._sessions: dict[str, Session] = {}

    def new(self, user: str | None = None) -> Session:
        """A fresh session with its own token and CSRF token."""
        self._expire()
        while len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.last_used)
            del self._sessions[oldest.token]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user, self.clock())
        self._sessions[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of ``token`` (its use refreshes it), or None."""
        session = self._sessions.get(token or "")
        if session is None:
            return None
        now = self.clock()
        if now - session.last_used > self.lifetime:
            del self._sessions[session.token]
            return None
        session.last_used = now
        return session

    def end(self, token: str) -> None:
        """Forget a session (logout)."""
        self._sessions.pop(token, None)

    def _expire(self) -> None:
        now = self.clock()
        for token in [t for t, s in self._sessions.items() if now - s.last_used > self.lifetime]:
            del self._sessions[token]


def csrf_ok(session: Session | None, sent: str | None) -> bool:
    """Whether a request's CSRF token is its session's (constant-time comparison)."""
    return session is not None and bool(sent) and secrets.compare_digest(session.csrf, sent or "")


class LoginLimiter:
    """Counts failed logins per client address and refuses an address that failed too often.

    Args:
        max_failures: failures within ``window`` after which the address is refused.
        window: seconds over which failures count.
        clock: monotonic clock.
    """

    def __init__(
        self, max_failures: int = MAX_FAILURES, window: float = FAILURE_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: it may now)."""
        failures = self._recent(address)
        if len(failures) < self.max_failures:
            return 0.0
        return max(0.0, failures[0] + self.window - self.clock())

    def failed(self, address: str) -> None:
        """Count one failed login from ``address``."""
        if len(self._failures) >= MAX_ADDRESSES:  # forget addresses whose failures left the window
            for quiet in [a for a in self._failures if not self._recent(a)]:
                del self._failures[quiet]
        self._recent(address).append(self.clock())

    def succeeded(self, address: str) -> None:
        """A good login clears the address's count."""
        self._failures.pop(address, None)

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.setdefault(address, deque(maxlen=self.max_failures))
        while failures and self.clock() - failures[0] > self.window:
            failures.popleft()
        return failures
