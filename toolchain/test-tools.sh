#!/usr/bin/env bash
# Installs the servers the tests start on loopback that Debian does not package: moto's S3
# server (PyPI `moto[server]`), into a virtual environment at .forge-tools/venv. pip uses
# its configured index; no host is written here. Idempotent.
#
#   bash toolchain/test-tools.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.forge-tools/venv
if [ -x "$venv/bin/moto_server" ]; then
    exit 0
fi
printf '==> python3 -m venv %s && pip install moto[server]\n' "$venv"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
"$venv/bin/moto_server" --help >/dev/null
