#!/usr/bin/env bash
# Deploy-stage benchmark against the Exoscale emulator (no injected latency, operations
# finish at once): `forge deploy --stage base` from nothing, `forge plan` of the deployed
# stage (goal < 1 s), `forge destroy`, with the API calls each makes. The reference is one
# HTTP round trip to the same emulator (`curl` of GET /v2/zone), measured in the same run:
# the plan's ratio says how many round trips of wall time it costs. From the repository
# root:
#
#   cargo build --release -p forge -p exoscale-emulator && bash benches/deploy/run.sh [WORKDIR]
#
# Prints a Markdown table; docs/benchmarks.md records a run.
set -euo pipefail
cd "$(dirname "$0")/../.."
FORGE=${FORGE:-$PWD/target/release/forge}
EMU=${EMU:-$PWD/target/release/exoscale-emulator}
W=$(realpath -m "${1:-target/bench-deploy}")
RUNS=${RUNS:-20}
rm -rf "$W"
mkdir -p "$W/project"  # a deploy checkout: platform.toml and the lockfile, no recipes/
export NO_COLOR=1

KEY=EXO0123456789abcdef01234567
SECRET=bench-secret
TEMPLATE=6e5a1c5e-0b1f-4a59-9a2e-2a7f6c3b9d10
# The emulator starts with one registered template (state file), as after `forge publish`.
cat >"$W/state.json" <<JSON
{"zones": {"ch-gva-2": {"templates": {"$TEMPLATE": {
  "id": "$TEMPLATE", "name": "bench-vault", "visibility": "private", "boot-mode": "legacy",
  "zones": ["ch-gva-2"], "checksum": "d41d8cd98f00b204e9800998ecf8427e", "size": 1}}}}}
JSON
"$EMU" --listen 127.0.0.1:0 --api-key "$KEY" --api-secret "$SECRET" --operation-delay-ms 0 \
    --state "$W/state.json" >"$W/emu.out" 2>"$W/emu.err" &
EMU_PID=$!
trap 'kill $EMU_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    grep -q 'listening on' "$W/emu.out" 2>/dev/null && break
    sleep 0.05
done
ENDPOINT=$(sed -n 's/^listening on //p' "$W/emu.out")

cat >"$W/project/platform.toml" <<TOML
[platform]
name = "bench"
zone = "ch-gva-2"
admin-networks = ["198.51.100.0/24", "2001:db8::/48"]
TOML
cat >"$W/project/lockfile.toml" <<TOML
version = 1
source-date-epoch = 315532800
builder = "forge/bench"

[[template]]
image = "vault"
zone = "ch-gva-2"
id = "$TEMPLATE"
name = "bench-vault"
output-sha256 = "$(printf '0%.0s' $(seq 64))"
md5 = "d41d8cd98f00b204e9800998ecf8427e"
boot-mode = "legacy"
TOML

export EXOSCALE_API_KEY=$KEY EXOSCALE_API_SECRET=$SECRET EXOSCALE_API_ENDPOINT=$ENDPOINT
export FORGE_EXOSCALE_POLL_MIN_MS=1
unset EXOSCALE_ZONE
f() { "$FORGE" -C "$W/project" "$@"; }
ms() { python3 -c "import sys,statistics; v=[float(x) for x in sys.stdin.read().split()]; print(f'{statistics.median(v)*1000:.1f}')"; }
now() { date +%s.%N; }

t0=$(now); f deploy --json >"$W/deploy.json"; t1=$(now)
deploy_ms=$(python3 -c "print(f'{($t1-$t0)*1000:.0f}')")
plan_times=()
for _ in $(seq "$RUNS"); do
    a=$(now); f plan --detailed-exitcode --json >"$W/plan.json"; b=$(now)
    plan_times+=("$(python3 -c "print($b-$a)")")
done
curl_times=()
for _ in $(seq "$RUNS"); do
    a=$(now); curl -s -o /dev/null "$ENDPOINT/zone"; b=$(now)
    curl_times+=("$(python3 -c "print($b-$a)")")
done
t0=$(now); f destroy --yes --json >"$W/destroy.json"; t1=$(now)
destroy_ms=$(python3 -c "print(f'{($t1-$t0)*1000:.0f}')")

plan_ms=$(printf '%s\n' "${plan_times[@]}" | ms)
curl_ms=$(printf '%s\n' "${curl_times[@]}" | ms)
python3 - "$W" "$deploy_ms" "$plan_ms" "$curl_ms" "$destroy_ms" <<'PY'
import json, sys
w, deploy_ms, plan_ms, curl_ms, destroy_ms = sys.argv[1], *sys.argv[2:]
d = json.load(open(f"{w}/deploy.json")); p = json.load(open(f"{w}/plan.json")); x = json.load(open(f"{w}/destroy.json"))
assert p["summary"] == {"create": 0, "update": 0, "replace": 0, "delete": 0}, p["summary"]
ratio = float(plan_ms) / float(curl_ms)
print("| measurement | result |")
print("| --- | --- |")
print(f"| `forge deploy` (12 resources, empty platform) | {deploy_ms} ms, {d['api-calls']} API calls, {d['rounds']} round(s) |")
print(f"| `forge plan` of the deployed stage (median of runs) | **{plan_ms} ms**, {p['api-calls']} API calls (goal < 1000 ms) |")
print(f"| reference: one `curl` round trip to the emulator | {curl_ms} ms; plan = {ratio:.1f} round trips |")
print(f"| `forge destroy --yes` | {destroy_ms} ms, {x['api-calls']} API calls |")
print()
print("deploy calls by endpoint:")
for k, v in d["api-calls-by-endpoint"].items():
    print(f"- `{k}`: {v}")
PY
