#!/usr/bin/env bash
# Installs what forge needs on a Debian 12 host (as root): a C toolchain for the zstd, xz
# and TLS crates; the tools the tests compare against (sha256sum, tar, zstd, gpg); and the
# image tools: mmdebstrap, e2fsprogs >= 1.47.1 (from bookworm-backports on Debian 12),
# dosfstools, mtools, syslinux, systemd-boot-efi, qemu, OVMF and SeaBIOS; and for the
# platform tests pip and venv (toolchain/local-sources.sh, toolchain/test-tools.sh), openssl,
# curl and systemd-analyze, and OpenSSH (the Vault stage reaches members over ssh; its test
# runs sshd on loopback); bubblewrap for the sandbox of build steps, and busybox-static,
# the shell of the sandbox tests.
# Idempotent: installs only what is missing. Packages come from the host's configured apt
# sources; no mirror host is written here.
set -euo pipefail

log() { printf '\n==> %s\n' "$*"; }
export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o DPkg::Lock::Timeout=600 -q "$@"; }
if [ "$(id -u)" -ne 0 ]; then
    echo "run $0 as root: it installs Debian packages" >&2
    exit 1
fi
packages=(build-essential cmake pkg-config ca-certificates coreutils tar zstd gnupg
    mmdebstrap dosfstools mtools syslinux syslinux-common systemd-boot-efi
    qemu-system-x86 qemu-utils ovmf seabios libarchive13 fdisk
    python3-pip python3-venv openssl systemd curl openssh-client openssh-server
    bubblewrap busybox-static)
missing=()
for p in "${packages[@]}"; do
    # No pipes into early-exiting readers (grep -q, head): under pipefail the writer's
    # SIGPIPE (exit 141) would fail the script at random.
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$p")
done
need_e2fs=1
if command -v mke2fs >/dev/null 2>&1; then
    v=$(mke2fs -V 2>&1 | sed -n '1s/^mke2fs \([0-9.]*\).*/\1/p')
    if dpkg --compare-versions "${v:-0}" ge 1.47.1; then need_e2fs=0; fi
fi
if ((${#missing[@]})) || ((need_e2fs)); then
    if ((need_e2fs)) && . /etc/os-release && [ "${VERSION_CODENAME:-}" = bookworm ]; then
        # bookworm-backports from the same mirror as the host's Debian source (never a
        # hard-coded host).
        if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
            uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
            [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $3 ~ /^bookworm/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
            [ -n "$uri" ] || { echo "cannot find the Debian mirror in apt's sources" >&2; exit 1; }
            printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
                > /etc/apt/sources.list.d/forge-backports.sources
        fi
    fi
    log "installing ${missing[*]:-}$( ((need_e2fs)) && echo ' e2fsprogs (>= 1.47.1)')"
    apt_get update
    if ((${#missing[@]})); then
        # --no-remove: fail rather than let the resolver remove installed packages (a
        # host with systemd from backports would otherwise lose it to libelogind0).
        apt_get install -y --no-install-recommends --no-remove "${missing[@]}"
    fi
    if ((need_e2fs)); then
        apt_get install -y --no-install-recommends -t bookworm-backports e2fsprogs
    fi
fi

