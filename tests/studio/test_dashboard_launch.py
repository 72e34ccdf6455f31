"""dashboard.sh installs the requirements on a fresh environment, skips the install when nothing it
installs from changed, and installs again when a requirement file changes. A stand-in `python`
records what the script asks of it, so nothing is installed or served for real."""

import os
import shutil
import subprocess
from pathlib import Path

from support import ROOT

FAKE_PYTHON = """#!/usr/bin/env bash
# Stand-in interpreter: sys.prefix is $FAKE_PREFIX, pip and streamlit calls are logged, and the
# distributions "exist" once pip has been called.
case "$1" in
  -c) case "$2" in
        *sys.prefix*) echo "$FAKE_PREFIX" ;;
        *importlib.metadata*) [ -f "$FAKE_PREFIX/installed" ] || exit 1 ;;
      esac ;;
  -m) echo "$*" >> "$FAKE_PREFIX/calls"; [ "$2" = pip ] && touch "$FAKE_PREFIX/installed" ;;
esac
exit 0
"""


def launch(checkout: Path, prefix: Path, **env) -> list[str]:
    """Run the checkout's dashboard.sh with the stand-in python; the calls it made to it."""
    (prefix / "calls").unlink(missing_ok=True)
    done = subprocess.run([str(checkout / "dashboard.sh"), "--server.port", "8599"], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": str(prefix / "python"), "FAKE_PREFIX": str(prefix), **env},
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return (prefix / "calls").read_text().splitlines()


def test_installs_once_then_only_when_requirements_change(tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("dashboard.sh", "requirements.txt", "requirements-neuron.txt", "pyproject.toml"):
        shutil.copy2(ROOT / name, checkout / name)
    prefix = tmp_path / "env"
    prefix.mkdir()
    (prefix / "python").write_text(FAKE_PYTHON)
    (prefix / "python").chmod(0o755)
    serve = "-m streamlit run app.py --server.port 8599"

    assert launch(checkout, prefix) == ["-m pip install -r requirements.txt", serve]  # fresh environment
    assert launch(checkout, prefix) == [serve]  # nothing changed: straight to the dashboard
    with open(checkout / "requirements-neuron.txt", "a") as requirements:
        requirements.write("tqdm\n")
    assert launch(checkout, prefix) == ["-m pip install -r requirements.txt", serve]
    assert launch(checkout, prefix) == [serve]
    # Another requirement file (an inf2 host) is another install.
    assert launch(checkout, prefix, REQUIREMENTS="requirements-neuron.txt") == [
        "-m pip install -r requirements-neuron.txt", serve]
    (prefix / "installed").unlink()  # the environment lost the packages (e.g. pip uninstall)
    assert launch(checkout, prefix, REQUIREMENTS="requirements-neuron.txt")[0] == "-m pip install -r requirements-neuron.txt"
