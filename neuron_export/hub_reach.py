"""Whether the Hugging Face Hub will give this host a model, asked before a compile job is queued.

One HEAD request with a short timeout, to the Hub the job would download from (HF_ENDPOINT, with
the token huggingface_hub would send), so a form can say "offline", "no such model" or "gated" in
a second or two instead of a job failing after it was queued. HF_HUB_OFFLINE means offline without
any request. A model already in the local Hugging Face cache is never a problem: the job's download
falls back to that copy.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Optional

from .errors import first_line

PROBE_TIMEOUT_S = 2.5
# The file the request asks for. A model's API URL (/api/models/ID) answers 200 for a gated model
# too: only a file URL says whether this host may download it (X-Error-Code: GatedRepo).
PROBED_FILE = "config.json"
CONFIG_FILES = ("config.json", "model_index.json")  # one of them is in the cache once a model was downloaded


def hub_offline() -> bool:
    """HF_HUB_OFFLINE is set: huggingface_hub makes no request at all."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def probe_url(repo_id: str) -> str:
    return f"{hub_endpoint()}/{repo_id}/resolve/main/{PROBED_FILE}"


def hub_model_problem(repo_id: str, timeout: float = PROBE_TIMEOUT_S) -> Optional[str]:
    """None when the job could get `repo_id` from the Hub (or the local cache), else one line: why not."""
    if _cached(repo_id):
        return None
    if hub_offline():
        return (f"cannot download {repo_id}: this host is offline for the Hugging Face Hub (HF_HUB_OFFLINE is set) and "
                "the model is not in the local cache; download it where the Hub is reachable and use a local folder")
    status, error_code, failure = _head(probe_url(repo_id), timeout)
    if failure:
        return (f"cannot reach the Hugging Face Hub at {hub_endpoint()} ({failure}): this host looks offline; "
                "download the model where the Hub is reachable and use a local folder")
    if error_code == "GatedRepo":
        return (f"{repo_id} is gated on the Hugging Face Hub: accept its terms on its Hub page and set HF_TOKEN "
                "(or run `hf auth login`) on this host")
    if error_code == "RepoNotFound" or status == 401:  # the Hub answers 401 for missing and private repos alike
        return f"no model {repo_id!r} on the Hugging Face Hub (or it is private and this host has no token for it)"
    if status >= 400 and error_code != "EntryNotFound":  # EntryNotFound: the repo exists without a config.json (diffusers)
        return f"the Hugging Face Hub answered {status} for {repo_id}; try again later"
    return None


def _head(url: str, timeout: float) -> tuple[int, Optional[str], Optional[str]]:
    """HTTP status, the Hub's X-Error-Code, and why no answer came (None when one came)."""
    request = urllib.request.Request(url, method="HEAD", headers=_auth_headers())
    opener = urllib.request.build_opener(_NoRedirect)  # a redirect (to the file's CDN) already means "yes"
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.headers.get("X-Error-Code"), None
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("X-Error-Code"), None
    except (urllib.error.URLError, OSError, ValueError) as error:  # no route, DNS, timeout, refused, bad HF_ENDPOINT
        return 0, None, first_line(getattr(error, "reason", error))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _auth_headers() -> dict[str, str]:
    from huggingface_hub import get_token

    token = get_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in CONFIG_FILES)
