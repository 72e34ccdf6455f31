"""AppTest of the password gate (app.py): a per-client back-off that says how long to wait, and no
page at all on a non-loopback address without a password (an empty password is none)."""

import pytest
from page_helpers import APP
from streamlit import config
from streamlit.testing.v1 import AppTest

from studio.auth import PasswordBackoff
from studio.environment import PASSWORD_ENV


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_answers_a_few_at_once_then_doubles_the_wait():
    clock = FakeClock()
    limits = PasswordBackoff(clock)
    for _ in range(PasswordBackoff.FREE_ATTEMPTS - 1):
        limits.failed("10.0.0.1")
        assert limits.wait_s("10.0.0.1") == 0
    waits = []
    for _ in range(4):
        limits.failed("10.0.0.1")
        waits.append(limits.wait_s("10.0.0.1"))
        clock.now += waits[-1]
    assert waits == [2.0, 4.0, 8.0, 16.0]
    assert limits.wait_s("10.0.0.2") == 0  # per client
    limits.failed("10.0.0.1")
    clock.now += 10
    assert limits.wait_s("10.0.0.1") == 22.0
    limits.succeeded("10.0.0.1")
    assert limits.wait_s("10.0.0.1") == 0


def test_the_wait_is_capped():
    limits = PasswordBackoff(FakeClock())
    for _ in range(40):
        limits.failed("x")
    assert limits.wait_s("x") == PasswordBackoff.MAX_WAIT_S


def sign_in(at: AppTest, password: str) -> AppTest:
    at.text_input[0].input(password)
    at.button[0].click()
    return at.run()


def test_wrong_passwords_get_a_back_off_with_the_time_to_wait(fresh_workspace, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    monkeypatch.setattr(PasswordBackoff, "FIRST_WAIT_S", 60.0)  # longer than any page run on a busy machine
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    for attempt in range(PasswordBackoff.FREE_ATTEMPTS - 1):
        assert [e.value for e in sign_in(at, "wrong").error] == ["Wrong password."]
    assert [e.value for e in sign_in(at, "wrong").error] == ["Wrong password. Try again in 60 s."]
    # Within the wait even the right password is not checked; the message says how long.
    errors = [e.value for e in sign_in(at, "s3cret").error]
    assert len(errors) == 1 and errors[0].startswith("Too many wrong passwords: try again in ")
    assert not [t for t in at.title if t.value == "Start here"]


@pytest.fixture
def address(request):
    previous = config.get_option("server.address")
    config.set_option("server.address", request.param)
    yield request.param
    config.set_option("server.address", previous)


@pytest.mark.parametrize("address", ["0.0.0.0", ""], indirect=True, ids=["all-interfaces", "unset"])
@pytest.mark.parametrize("password", [None, ""], ids=["no-password", "empty-password"])
def test_no_page_beyond_loopback_without_a_password(address, password, fresh_workspace, monkeypatch):
    if password is not None:
        monkeypatch.setenv(PASSWORD_ENV, password)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not [t for t in at.title if t.value == "Start here"]
    assert any("reachable beyond this host" in e.value and PASSWORD_ENV in e.value for e in at.error)


@pytest.mark.parametrize("address", ["0.0.0.0"], indirect=True)
def test_a_password_opens_a_dashboard_beyond_loopback(address, fresh_workspace, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    at = sign_in(AppTest.from_file(str(APP), default_timeout=60).run(), "s3cret")
    assert [t for t in at.title if t.value == "Start here"]


@pytest.mark.parametrize("address", ["127.0.0.1"], indirect=True)
def test_loopback_needs_no_password(address, fresh_workspace):
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert [t for t in at.title if t.value == "Start here"]
