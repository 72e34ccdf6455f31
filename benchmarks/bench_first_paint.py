"""How long a person waits for the dashboard's first page: from `streamlit run app.py` starting to
the first page rendered in headless Chromium (its title heading on screen).

Each run starts a fresh server on a free loopback port with an empty workspace (the browser is
started beforehand and not counted), loads the root URL and waits for the default page's heading.
Prints, per run, when the port opened and when the page painted, then the median, with the host's
CPU and ISA. Needs Debian's chromium (/usr/bin/chromium) and Playwright (python).

To compare checkouts (e.g. before and after a change: `git archive REV | tar -x -C /tmp/before`),
pass each app.py with --app: runs alternate between them, so a change in the machine's load hits
both alike.

    python benchmarks/bench_first_paint.py [--runs 3] [--timeout_s 120] [--app PATH/app.py ...]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuron_export.benchmark.report import host_summary  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FIRST_HEADING = "h1"  # every page opens with st.title: its heading is the page's first own paint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"streamlit did not listen on port {port} in time")


def one_run(browser, app: Path, timeout_s: float) -> tuple[float, float, str]:
    """Seconds from the server's start to its port opening and to the first page's heading; the heading."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="first-paint-") as workspace:
        env = {**os.environ, "NEURON_EXPORT_WORKSPACE": workspace, "PYTHONPATH": str(app.parent)}
        env.pop("NEURON_EXPORT_PASSWORD", None)
        start = time.monotonic()
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=app.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            wait_for_port(port, start + timeout_s)
            listening = time.monotonic() - start
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/", timeout=timeout_s * 1000)
            heading = page.locator(FIRST_HEADING).first
            heading.wait_for(state="visible", timeout=timeout_s * 1000)
            painted = time.monotonic() - start
            text = heading.inner_text()
            page.close()
        finally:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)
    return listening, painted, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout_s", type=float, default=120)
    parser.add_argument("--app", type=Path, action="append", help="app.py of the checkout to time (repeatable; "
                        "default: this one)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    apps = [app.resolve() for app in args.app or [ROOT / "app.py"]]
    host = host_summary()
    painted: dict[Path, list[float]] = {app: [] for app in apps}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for run in range(1, args.runs + 1):
            for app in apps:
                listening, paint, heading = one_run(browser, app, args.timeout_s)
                painted[app].append(paint)
                print(f"run {run}, {app}: port open after {listening:.2f} s, first page ({heading!r}) painted after "
                      f"{paint:.2f} s (load average {os.getloadavg()[0]:.1f})")
        browser.close()
    for app, times in painted.items():
        print(f"first paint of {app}: median {statistics.median(times):.2f} s over {len(times)} run(s) "
              f"(min {min(times):.2f}, max {max(times):.2f})")
    print(f"host: {host['processor']}, {host['cpu_count']} cores, torch ISA {host['cpu_capability']}, "
          f"compiled-code ISA {host['isa']}")


if __name__ == "__main__":
    main()
