"""AppTest of app.py: the password gate in front of every page."""

from page_helpers import APP
from streamlit.testing.v1 import AppTest


def test_password_gate(fresh_workspace, monkeypatch):
    monkeypatch.setenv("NEURON_EXPORT_PASSWORD", "s3cret")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not [t for t in at.title if t.value == "Start here"]
    at.text_input[0].input("wrong")
    at.button[0].click().run()
    assert any("Wrong password" in e.value for e in at.error)
    at.text_input[0].input("s3cret")
    at.button[0].click().run()
    assert [t for t in at.title if t.value == "Start here"]
