#!/usr/bin/env bash
# Platform images benchmark: the four images of the `local` variant (vault, etcd,
# kube-controlplane, kube-node) built with --locked from warm sources into an empty store.
# The reference is the original's Packer builds (spec §3: 5m02 + 5m14 + 5m31 + 5m28 =
# 21m15s), which cannot run here (they need an Exoscale account). As root, from the
# repository root, after `cargo build --release` and `bash toolchain/local-sources.sh`:
#
#   bash benches/images/platform.sh [WORKDIR]
#
# Prints a Markdown table; docs/benchmarks.md records a run.
set -euo pipefail
cd "$(dirname "$0")/../.."
FORGE=${FORGE:-$PWD/target/release/forge}
W=$(realpath -m "${1:-target/bench-platform}")
rm -rf "$W"
mkdir -p "$W"
export NO_COLOR=1

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }

# Setup (not measured): every source and .deb into a source store.
FORGE_STORE="$W/src-store" "$FORGE" -q --variant local fetch images --source-dir .forge-sources
SOURCES="$W/src-store/blobs/sha256:$PWD/.forge-sources"

# Cold: empty store, warm sources.
t0=$(now)
/usr/bin/time -v -o "$W/cold.time" env FORGE_STORE="$W/store" FORGE_SOURCE_DIRS="$SOURCES" \
    "$FORGE" --variant local build images --locked --json >"$W/cold.json" 2>"$W/cold.err"
t1=$(now)
cold=$(secs "$t0" "$t1")
rss_kb=$(awk -F': ' '/Maximum resident/ {print $2}' "$W/cold.time")

# No-op: the same again.
t0=$(now)
FORGE_STORE="$W/store" FORGE_SOURCE_DIRS="$SOURCES" "$FORGE" -q --variant local build images --locked
t1=$(now)
noop=$(secs "$t0" "$t1")

python3 - "$W/cold.json" "$cold" "$noop" "$rss_kb" <<'PY'
import json, sys
report, cold, noop, rss_kb = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
d = json.load(open(report))
packer = 5 * 60 + 2 + 5 * 60 + 14 + 5 * 60 + 31 + 5 * 60 + 28
print("| measure | value |")
print("| --- | --- |")
print(f"| four images, warm sources, empty store | **{cold:.1f} s** |")
print(f"| original (Packer + Ansible, spec §3) | {packer // 60} min {packer % 60} s |")
print(f"| ratio (Packer / forge) | **{packer / cold:.1f}** |")
print(f"| no-op rebuild (all four cached) | {noop:.2f} s |")
print(f"| peak RSS of forge | {rss_kb / 1024:.0f} MiB |")
for t in d["targets"]:
    if t["kind"] != "image":
        continue
    phases = ", ".join(f"{p['phase']} {p['seconds']:.1f} s" for p in t["phases"])
    print(f"| {t['name']} | {phases} |")
PY
