#!/usr/bin/env bash
# Image benchmark: forge against mkosi (the reference peer), in the same run, on
# equivalent images (benches/images/forge and benches/images/mkosi), plus forge's rebuild
# cases. As root, from the repository root, after `cargo build --release`:
#
#   bash benches/images/run.sh [WORKDIR]
#
# Prints a Markdown table; docs/benchmarks.md records a run. Needs mkosi 24.3
# (bookworm-backports) for the peer; without it, the mkosi rows are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
FORGE=${FORGE:-$PWD/target/release/forge}
W=$(realpath -m "${1:-target/bench-images}")
rm -rf "$W"
mkdir -p "$W"
export NO_COLOR=1

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }
json() { EXPR="$2" python3 -c "import json,os,sys; d=json.load(open(sys.argv[1])); print(eval(os.environ['EXPR']))" "$1"; }

cp -r benches/images/forge "$W/project"

# Setup (not measured): resolve the package set and fetch the .debs into a source store.
FORGE_STORE="$W/src-store" "$FORGE" -q -C "$W/project" lock
FORGE_STORE="$W/src-store" "$FORGE" -q -C "$W/project" fetch
SRC="$W/src-store/blobs/sha256"

# 1. forge, warm sources (a --source-dir holding the .debs), empty store.
t0=$(now)
/usr/bin/time -v -o "$W/forge.time" env FORGE_STORE="$W/store" FORGE_SOURCE_DIRS="$SRC" \
    "$FORGE" -C "$W/project" build images --json >"$W/forge.json" 2>"$W/forge.err"
t1=$(now)
forge_total=$(secs "$t0" "$t1")
forge_rss_kb=$(awk -F': ' '/Maximum resident/ {print $2}' "$W/forge.time")
phase() { json "$W/forge.json" "[p['seconds'] for t in d['targets'] if t['kind']=='image' for p in t['phases'] if p['phase']=='$1'][0]"; }
p_base=$(phase base); p_layers=$(phase layers); p_fs=$(phase filesystem); p_disk=$(phase disk); p_conv=$(phase convert)
sha1=$(json "$W/forge.json" "[t['sha256'] for t in d['targets'] if t['kind']=='image'][0]")
qcow2=$(json "$W/forge.json" "[t['output'] for t in d['targets'] if t['kind']=='image'][0]")

# 2. forge again, another empty store: bit-identical?
FORGE_STORE="$W/store2" FORGE_SOURCE_DIRS="$SRC" "$FORGE" -C "$W/project" build images --json >"$W/forge2.json" 2>/dev/null
sha2=$(json "$W/forge2.json" "[t['sha256'] for t in d['targets'] if t['kind']=='image'][0]")

# 3. The I/O floor: cp of the same raw disk.
qemu-img convert -f qcow2 -O raw "$qcow2" "$W/disk.raw"
sync
t0=$(now); cp --sparse=always "$W/disk.raw" "$W/disk-copy.raw"; sync; t1=$(now)
cp_secs=$(secs "$t0" "$t1")
fdc=$(python3 -c "print(f'{$p_fs + $p_disk + $p_conv:.1f}')")

# 4. No-op rebuild.
t0=$(now); FORGE_STORE="$W/store" "$FORGE" -q -C "$W/project" build images; t1=$(now)
noop=$(python3 -c "print(f'{$t1 - $t0:.2f}')")

# 5. Rebuild after changing one layer (the base is reused).
sed -i 's/BENCH-OK/BENCH-OK changed/' "$W/project/recipes/bench-marker.toml"
t0=$(now); FORGE_STORE="$W/store" "$FORGE" -q -C "$W/project" build images; t1=$(now)
relayer=$(secs "$t0" "$t1")

# 6. mkosi: warm package cache, then two timed builds.
mkosi_row=""
if command -v mkosi >/dev/null 2>&1; then
    cp -r benches/images/mkosi "$W/mkosi"
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources)
    mkdir -p "$W/mkosi/mkosi.pkgmngr/etc/apt/sources.list.d"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
        >"$W/mkosi/mkosi.pkgmngr/etc/apt/sources.list.d/mkosi.sources"
    (cd "$W/mkosi" && mkosi --package-cache-dir "$W/mkosi-cache" --output-dir "$W/mkosi-out0" build >"$W/mkosi0.log" 2>&1)
    t0=$(now)
    (cd "$W/mkosi" && mkosi --package-cache-dir "$W/mkosi-cache" --output-dir "$W/mkosi-out1" -f build >"$W/mkosi1.log" 2>&1)
    t1=$(now)
    mkosi_secs=$(secs "$t0" "$t1")
    (cd "$W/mkosi" && mkosi --package-cache-dir "$W/mkosi-cache" --output-dir "$W/mkosi-out2" -f build >"$W/mkosi2.log" 2>&1)
    m1=$(sha256sum "$W/mkosi-out1/bench.raw" | cut -c1-12)
    m2=$(sha256sum "$W/mkosi-out2/bench.raw" | cut -c1-12)
    ratio=$(python3 -c "print(f'{$mkosi_secs / $forge_total:.2f}')")
    mkosi_row="| mkosi 24.3, warm package cache | ${mkosi_secs} s | forge ${forge_total} s | **${ratio}** (mkosi / forge) | two builds: ${m1} / ${m2} ($( [ "$m1" = "$m2" ] && echo identical || echo differ)) |"
fi

cat <<EOF
| measure | value | reference | ratio | note |
| --- | --- | --- | --- | --- |
| forge, warm sources, empty store | ${forge_total} s | | | peak RSS $((forge_rss_kb / 1024)) MiB |
| phases | base ${p_base} s, layers ${p_layers} s, filesystem ${p_fs} s, disk ${p_disk} s, convert ${p_conv} s | | | |
| filesystem + disk + convert | ${fdc} s | cp --sparse=always of the raw disk: ${cp_secs} s | $(python3 -c "print(f'{$fdc / max($cp_secs, 0.01):.1f}')") × cp | |
| bit-identical | ${sha1:0:12} / ${sha2:0:12} | | | $( [ "$sha1" = "$sha2" ] && echo identical || echo DIFFER) |
| no-op rebuild | ${noop} s | | | |
| rebuild after changing one layer | ${relayer} s | | | base reused |
${mkosi_row}
EOF
