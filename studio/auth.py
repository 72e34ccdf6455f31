"""Optional password gate for a dashboard reachable beyond loopback (e.g. on an EC2 instance)."""

from __future__ import annotations

import hmac
import os
from typing import Optional

import streamlit as st

PASSWORD_ENV = "NEURON_EXPORT_PASSWORD"


def configured_password() -> Optional[str]:
    """The password from the environment, else from .streamlit/secrets.toml (`password = "..."`)."""
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    try:
        return st.secrets.get("password") or None
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return None


def require_password() -> None:
    """Stop the script with a sign-in form until the session has given the password (if one is set)."""
    password = configured_password()
    if password is None or st.session_state.get("signed_in"):
        return
    st.title("neuron_export studio")
    with st.form("sign-in"):
        attempt = st.text_input("Password", type="password")
        if st.form_submit_button("Sign in", type="primary"):
            if hmac.compare_digest(attempt.encode(), password.encode()):
                st.session_state["signed_in"] = True
                st.rerun()
            st.error("Wrong password.")
    st.stop()
