#!/usr/bin/env bash
# Vault-stage benchmark against a local 3-node OpenBao raft cluster (the `bao` binary of
# `toolchain/test-tools.sh`, TLS from forge's PKI): `forge deploy --stage vault` from
# nothing (init, unseal, join, full configuration), then the no-change re-run and the
# plan, with the Vault API calls each makes (goal: the no-change run only reads). The
# reference is one HTTPS round trip to the same cluster (`curl` of GET /v1/sys/health),
# measured in the same run. From the repository root:
#
#   cargo build --release -p forge && bash toolchain/test-tools.sh && bash benches/vault/run.sh [WORKDIR]
#
# Prints a Markdown table; docs/benchmarks.md records a run.
set -euo pipefail
cd "$(dirname "$0")/../.."
FORGE=${FORGE:-$PWD/target/release/forge}
BAO=${BAO:-$PWD/.forge-tools/bin/bao}
W=$(realpath -m "${1:-target/bench-vault}")
RUNS=${RUNS:-20}
rm -rf "$W"
mkdir -p "$W/project/recipes"
cp -r manifests "$W/project/"
export NO_COLOR=1 FORGE_SECRETS_DIR="$W/secrets"
unset VAULT_ADDR VAULT_TOKEN VAULT_CACERT EXOSCALE_API_KEY EXOSCALE_API_SECRET

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cat >"$W/project/platform.toml" <<TOML
[platform]
name = "bench"
zone = "ch-gva-2"
admin-networks = ["127.0.0.0/8"]
TOML
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
declare -A API CL
for n in 1 2 3; do
    API[$n]=$(port); CL[$n]=$(port)
    mkdir -p "$W/m$n/data"
    printf '\n[[vault.member]]\nname = "m%s"\napi-addr = "https://127.0.0.1:%s"\ntls-dir = "%s"\n' \
        "$n" "${API[$n]}" "$W/m$n/tls" >>"$W/project/platform.toml"
    cat >"$W/m$n/server.hcl" <<HCL
cluster_name = "bench-vault"
api_addr     = "https://127.0.0.1:${API[$n]}"
cluster_addr = "https://127.0.0.1:${CL[$n]}"
listener "tcp" {
  address         = "127.0.0.1:${API[$n]}"
  cluster_address = "127.0.0.1:${CL[$n]}"
  tls_cert_file   = "$W/m$n/tls/server.pem"
  tls_key_file    = "$W/m$n/tls/server.key"
}
storage "raft" {
  path                   = "$W/m$n/data"
  node_id                = "m$n"
  performance_multiplier = 1
}
audit "file" "file" {
  options {
    file_path = "$W/m$n/audit.log"
    mode      = "0600"
  }
}
HCL
done
f() { "$FORGE" -C "$W/project" "$@"; }
now() { date +%s.%N; }
ms() { python3 -c "import sys,statistics; v=[float(x) for x in sys.stdin.read().split()]; print(f'{statistics.median(v)*1000:.1f}')"; }
jq_() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

f -q deploy --stage vault                     # root CA and the members' TLS material
for n in 1 2 3; do
    "$BAO" server -config="$W/m$n/server.hcl" >"$W/m$n/log" 2>&1 &
    PIDS+=($!)
done
for n in 1 2 3; do
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/${API[$n]}") 2>/dev/null && break
        sleep 0.1
    done
done

t0=$(now); f deploy --stage vault --json >"$W/first.json"; t1=$(now)
first_ms=$(python3 -c "print(f'{($t1-$t0)*1000:.0f}')")
redeploy=(); plan=(); curl_t=()
for _ in $(seq "$RUNS"); do
    a=$(now); f deploy --stage vault --json >"$W/again.json"; b=$(now)
    redeploy+=("$(python3 -c "print($b-$a)")")
    a=$(now); f plan --stage vault-config --detailed-exitcode --json >"$W/plan.json"; b=$(now)
    plan+=("$(python3 -c "print($b-$a)")")
    a=$(now); curl -s -o /dev/null --cacert "$W/secrets/root-ca.pem" "https://127.0.0.1:${API[1]}/v1/sys/health"; b=$(now)
    curl_t+=("$(python3 -c "print($b-$a)")")
done
redeploy_ms=$(printf '%s\n' "${redeploy[@]}" | ms)
plan_ms=$(printf '%s\n' "${plan[@]}" | ms)
curl_ms=$(printf '%s\n' "${curl_t[@]}" | ms)

echo "| run | wall time | Vault reads | Vault writes | vs one curl round trip |"
echo "| --- | ---: | ---: | ---: | ---: |"
echo "| first \`deploy --stage vault\` (init, unseal 3, join 2, configure) | ${first_ms} ms (lifecycle $(jq_ "$W/first.json" "round(d['lifecycle-seconds']*1000)") ms, configuration $(jq_ "$W/first.json" "round(d['config-seconds']*1000)") ms) | $(jq_ "$W/first.json" "d['vault-reads']") | $(jq_ "$W/first.json" "d['vault-writes']") | |"
echo "| no-change \`deploy --stage vault\` (median of $RUNS) | ${redeploy_ms} ms | $(jq_ "$W/again.json" "d['vault-reads']") | $(jq_ "$W/again.json" "d['vault-writes']") | $(python3 -c "print(f'{$redeploy_ms/$curl_ms:.1f}')") |"
echo "| \`plan --stage vault-config\` (median of $RUNS) | ${plan_ms} ms | $(jq_ "$W/plan.json" "d['vault-reads']") | $(jq_ "$W/plan.json" "d['vault-writes']") | $(python3 -c "print(f'{$plan_ms/$curl_ms:.1f}')") |"
echo "| reference: \`curl\` GET /v1/sys/health (median of $RUNS) | ${curl_ms} ms | 1 | 0 | 1.0 |"
echo
echo "first run: $(jq_ "$W/first.json" "len(d['steps'])") lifecycle steps, $(jq_ "$W/first.json" "len(d['config']['changes'])") configuration changes"
