"""In-memory web sessions with one CSRF token each, like Dolibarr's PHP sessions.

The session id is not rotated at login, and the token stays the same for the whole
session, as observed on Dolibarr 20.0.2.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field

# Sessions idle for longer than this are forgotten, like PHP's session.gc_maxlifetime default.
IDLE_LIMIT_SECONDS = 1440
MAX_SESSIONS = 10_000


def session_cookie_name(instance_id: str) -> str:
    """Return Dolibarr's session cookie name: ``DOLSESSID_`` + sha1('dolibarr' + instance id)."""
    return "DOLSESSID_" + hashlib.sha1(("dolibarr" + instance_id).encode()).hexdigest()


@dataclass
class Session:
    session_id: str
    token: str
    login: str | None = None
    last_seen: float = field(default_factory=time.monotonic)


class SessionStore:
    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get_or_create(self, session_id: str | None) -> tuple[Session, bool]:
        """Return the session for ``session_id``, or a new one, and whether it is new."""
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(session_id or "")
            if session is not None and now - session.last_seen < IDLE_LIMIT_SECONDS:
                session.last_seen = now
                return session, False

            self._forget_idle(now)
            session = Session(session_id=secrets.token_hex(16), token=secrets.token_hex(16))
            self._sessions[session.session_id] = session
            return session, True

    def destroy(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.session_id, None)

    def _forget_idle(self, now: float) -> None:
        idle = [key for key, value in self._sessions.items() if now - value.last_seen >= IDLE_LIMIT_SECONDS]
        for key in idle:
            del self._sessions[key]
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda value: value.last_seen)
            del self._sessions[oldest.session_id]
