#!/usr/bin/env bash
# Installs the developer tools that must not share the project's virtualenv (checkov: its many
# pinned dependencies clash with the pipeline's) into a virtualenv of their own, from the exact
# versions in scripts/tools-constraints.txt. tests/deploy/ runs the checkov installed here.
set -euo pipefail
venv="${1:-.venv-tools}"

if [ ! -x "$venv/bin/python" ]; then
  python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -c scripts/tools-constraints.txt checkov
"$venv/bin/checkov" --version >/dev/null
echo "setup-tools: checkov $("$venv/bin/checkov" --version) ready in $venv"
