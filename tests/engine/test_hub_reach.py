"""hub_reach: the Hub's answers mapped to one line each, against a stand-in Hub on the loopback
interface (HF_ENDPOINT), the Hub's real status codes and X-Error-Code headers; no request leaves
this host, and none is made when HF_HUB_OFFLINE is set or the model is in the local cache."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import huggingface_hub.constants
import pytest

from neuron_export import hub_reach

# What huggingface.co answers a HEAD of /OWNER/NAME/resolve/main/config.json (huggingface_hub's
# hf_raise_for_status reads the same headers).
ANSWERS = {
    "acme/public": (200, None),
    "acme/gated": (401, "GatedRepo"),
    "acme/missing": (401, "RepoNotFound"),
    "acme/pipeline": (404, "EntryNotFound"),  # a diffusers repo: model_index.json, no config.json
    "acme/renamed": (307, None),
    "acme/broken": (500, None),
}


class StandInHub(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, str]] = []  # (method, path, Authorization)
    delay_s = 0.0

    def do_HEAD(self):
        StandInHub.requests.append((self.command, self.path, self.headers.get("Authorization", "")))
        time.sleep(self.delay_s)
        repo_id = "/".join(self.path.strip("/").split("/")[:2])
        status, error_code = ANSWERS.get(repo_id, (401, "RepoNotFound"))
        self.send_response(status)
        if error_code:
            self.send_header("X-Error-Code", error_code)
        if status == 307:
            self.send_header("Location", "/acme/public/resolve/main/config.json")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(monkeypatch, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInHub)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    StandInHub.requests, StandInHub.delay_s = [], 0.0
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}/")
    monkeypatch.setenv("HF_TOKEN", "hf_standin")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    yield StandInHub
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("repo_id, words", [
    ("acme/public", None),
    ("acme/pipeline", None),
    ("acme/renamed", None),
    ("acme/gated", "is gated on the Hugging Face Hub"),
    ("acme/missing", "no model 'acme/missing' on the Hugging Face Hub"),
    ("acme/broken", "answered 500"),
])
def test_each_hub_answer_is_one_line(hub, repo_id, words):
    problem = hub_reach.hub_model_problem(repo_id)
    assert problem is None if words is None else (words in problem and "\n" not in problem), problem
    # One HEAD, of the file the job reads first, at HF_ENDPOINT, with the token the job would send.
    assert hub.requests == [("HEAD", f"/{repo_id}/resolve/main/config.json", "Bearer hf_standin")]


def test_offline_by_setting_asks_nothing(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "offline for the Hugging Face Hub (HF_HUB_OFFLINE is set)" in hub_reach.hub_model_problem("acme/public")
    assert hub.requests == []


def test_a_cached_model_is_no_problem_even_offline(hub, monkeypatch, tmp_path):
    snapshot = tmp_path / "hub-cache" / "models--acme--missing" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reach.hub_model_problem("acme/missing") is None
    assert hub.requests == []


def test_no_answer_in_time_says_offline(hub):
    hub.delay_s = 1.0
    started = time.monotonic()
    problem = hub_reach.hub_model_problem("acme/public", timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert "cannot reach the Hugging Face Hub" in problem and "looks offline" in problem


def test_nothing_listening_says_offline(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens here
    problem = hub_reach.hub_model_problem("acme/public")
    assert problem.startswith("cannot reach the Hugging Face Hub at http://127.0.0.1:9 (")
