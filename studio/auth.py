"""The password gate for a dashboard reachable beyond loopback (e.g. on an EC2 instance).

Without a password the dashboard serves loopback only: bound to any other address it refuses to
show a page. Wrong passwords from one client slow it down (PasswordBackoff), and the password never
reaches a job's process (studio.environment.PRIVATE_ENV).
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import threading
import time
from typing import Callable, Optional

import streamlit as st

from studio.environment import PASSWORD_ENV

LOOPBACK_ADDRESSES = ("127.0.0.1", "::1", "localhost")
log = logging.getLogger("neuron_export.studio")


class PasswordBackoff:
    """Per-client back-off after wrong passwords: FREE_ATTEMPTS are answered at once, then each
    further failure doubles the wait before the next attempt is even checked (capped at MAX_WAIT_S)."""

    FREE_ATTEMPTS = 3
    FIRST_WAIT_S = 2.0
    MAX_WAIT_S = 300.0

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # client -> (failures, earliest next attempt)

    def wait_s(self, client: str) -> float:
        """Seconds before `client` may try again (0: now)."""
        with self._lock:
            _, allowed_at = self._failures.get(client, (0, 0.0))
        return max(0.0, allowed_at - self._clock())

    def failed(self, client: str) -> None:
        with self._lock:
            count = self._failures.get(client, (0, 0.0))[0] + 1
            wait = 0.0
            if count >= self.FREE_ATTEMPTS:
                wait = min(self.MAX_WAIT_S, self.FIRST_WAIT_S * 2 ** (count - self.FREE_ATTEMPTS))
            self._failures[client] = (count, self._clock() + wait)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


@st.cache_resource
def backoff() -> PasswordBackoff:
    """One back-off record per server process, shared by every session (a client may open many)."""
    return PasswordBackoff()


def configured_password() -> Optional[str]:
    """The password from the environment, else from .streamlit/secrets.toml (`password = "..."`);
    an empty one is no password."""
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    try:
        return st.secrets.get("password") or None
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return None


def serves_loopback_only() -> bool:
    """Whether the server listens on a loopback address only (unset means every interface)."""
    address = str(st.get_option("server.address") or "")
    return address in LOOPBACK_ADDRESSES or address.startswith("127.")


def client_id() -> str:
    """Who is signing in, for the back-off: the connection's address (None on loopback)."""
    address = st.context.ip_address
    return address if isinstance(address, str) and address else "loopback"


def require_password() -> None:
    """Stop the script until the session has given the password; refuse to serve beyond loopback
    without one."""
    password = configured_password()
    if password is None:
        if serves_loopback_only():
            return
        address = st.get_option("server.address") or "every interface"
        log.error("refusing to serve on %s without a password: set %s", address, PASSWORD_ENV)
        st.error(f"This dashboard is reachable beyond this host ({address}) but has no password, so it shows "
                 f"nothing. Set {PASSWORD_ENV} (or `password` in .streamlit/secrets.toml) and restart it, or bind "
                 "it to 127.0.0.1 and use an SSH tunnel.", icon=":material/lock:")
        st.stop()
    if st.session_state.get("signed_in"):
        return
    st.title("neuron_export studio")
    with st.form("sign-in"):
        attempt = st.text_input("Password", type="password")
        if st.form_submit_button("Sign in", type="primary"):
            check_attempt(attempt, password, backoff(), client_id())
    st.stop()


def check_attempt(attempt: str, password: str, limits: PasswordBackoff, client: str) -> None:
    """Sign the session in, or say why not: a wrong password, or how long to wait before trying again."""
    wait = limits.wait_s(client)
    if wait > 0:
        st.error(f"Too many wrong passwords: try again in {math.ceil(wait)} s.", icon=":material/timer:")
        return
    if hmac.compare_digest(attempt.encode(), password.encode()):
        limits.succeeded(client)
        st.session_state["signed_in"] = True
        st.rerun()
    limits.failed(client)
    wait = limits.wait_s(client)
    st.error("Wrong password." + (f" Try again in {math.ceil(wait)} s." if wait > 0 else ""))
