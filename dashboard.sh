#!/usr/bin/env bash
# Launch the dashboard: ./dashboard.sh [streamlit options, e.g. --server.address 0.0.0.0]
#
# Installs the requirements first (`pip install -r requirements.txt`, which also installs this checkout
# as an editable package) only when something it installs from changed since this script last did:
# a stamp file in the Python environment holds the hash of the requirement files and pyproject.toml and
# the checkout's path. A fresh machine installs once; a restart with nothing changed starts at once.
#   REQUIREMENTS=requirements-neuron.txt ./dashboard.sh   # on an inf2 / trn1 host: keeps AWS's torch
#   PYTHON=/path/to/python ./dashboard.sh                 # another interpreter than `python` on PATH
# Delete the stamp (its path is printed when it is written) to force a reinstall.
set -euo pipefail
cd "$(dirname "$0")"
requirements="${REQUIREMENTS:-requirements.txt}"
python="${PYTHON:-python}"
prefix="$("$python" -c 'import sys; print(sys.prefix)')"
stamp="$prefix/.neuron_export_requirements.sha256"
wanted="$(cat "$requirements" requirements-neuron.txt pyproject.toml | sha256sum | cut -d' ' -f1) $requirements $PWD"
installed() {
  [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ] &&
    "$python" -c 'import importlib.metadata as m; m.version("neuron-export"); m.version("streamlit")' 2>/dev/null
}
if ! installed; then
  "$python" -m pip install -r "$requirements"
  printf '%s\n' "$wanted" > "$stamp"
  echo "Installed $requirements; next start skips this until it changes (stamp: $stamp)"
fi
exec "$python" -m streamlit run app.py "$@"
