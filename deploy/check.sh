#!/usr/bin/env bash
# Offline checks of everything under deploy/ (CI calls this; so can you: bash deploy/check.sh).
#  1. renders the kustomize base and every overlay under deploy/k8s/overlays/ (kubectl kustomize,
#     or a standalone kustomize), and validates every rendered object strictly (unknown fields are
#     errors) against the Kubernetes OpenAPI schemas bundled in the kubernetes-validate package,
#     for the oldest supported version and the newest bundled one;
#  2. checks the deployment policy on each rendered overlay (deploy/lint_rendered.py: hardening,
#     probes, wiring, every Secret/ConfigMap/Service reference resolves);
#  3. checks deploy/compose.yaml (docker compose config where a compose client exists, a YAML and
#     wiring check otherwise);
#  4. runs `systemd-analyze verify` (any message fails) and `systemd-analyze security --offline`
#     (exposure must stay below 1.5) on the kiosk unit, where systemd-analyze can run;
#  5. deploy/monitoring: `promtool check rules` and `promtool test rules` on the alert rules,
#     `promtool check config` on the Prometheus config (where this promtool has Kubernetes
#     service discovery; Debian's does not), and the Grafana dashboards parse as JSON and match
#     what gen_dashboards.py generates.
# Exits non-zero if anything is invalid. The container image is not built: no container engine
# on the development and CI machines.
set -euo pipefail
cd "$(dirname "$0")/.."

# Kubernetes versions the manifests must be valid for: the oldest supported (gRPC probes,
# internalTrafficPolicy, PDB unhealthyPodEvictionPolicy are all GA there) and the newest schema
# that the pinned kubernetes-validate bundles (it bundles 1.25 ... 1.37).
K8S_VERSIONS=${EDGECART_K8S_VERSIONS:-"1.33.0 1.37.0"}
KUBERNETES_VALIDATE_VERSION=1.37.0
PYTHON=${PYTHON:-python3}

failed=0
fail() { echo "FAIL: $*" >&2; failed=1; }
step() { echo "== deploy: $*"; }

# --- tools ---------------------------------------------------------------------------------
if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
    render() { kubectl kustomize "$1"; }
    step "renderer: $(kubectl version --client 2>/dev/null | tr '\n' ' ')"
elif command -v kustomize >/dev/null 2>&1; then
    render() { kustomize build "$1"; }
    step "renderer: kustomize $(kustomize version 2>/dev/null)"
else
    echo "FAIL: neither kubectl (>= 1.21, with kustomize v4+) nor kustomize is installed." >&2
    echo "      Neither is served by the package registries that this machine reaches in a" >&2
    echo "      usable version (Debian bookworm's kubernetes-client is kubectl 1.20)." >&2
    exit 1
fi

if ! "$PYTHON" - "$KUBERNETES_VALIDATE_VERSION" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
import yaml  # noqa: F401  (lint_rendered.py needs PyYAML, a dependency of kubernetes-validate)
sys.exit(0 if version("kubernetes-validate") == sys.argv[1] else 1)
PY
then
    step "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION from PyPI"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# --- 1 + 2: render, validate, policy --------------------------------------------------------
targets=(deploy/k8s/base)
for d in deploy/k8s/overlays/*/; do targets+=("${d%/}"); done
for dir in "${targets[@]}"; do
    name=$(basename "$dir")
    file="$out/$name.yaml"
    if ! render "$dir" >"$file"; then
        fail "$dir does not render"
        continue
    fi
    n=$(grep -c '^kind:' "$file" || true)
    step "$dir renders $n objects"
    for v in $K8S_VERSIONS; do
        if "$PYTHON" -m kubernetes_validate --strict --quiet -k "$v" "$file"; then
            step "$dir: all $n objects valid for Kubernetes $v (strict)"
        else
            fail "$dir: invalid for Kubernetes $v"
        fi
    done
    if [ "$name" != base ]; then
        "$PYTHON" deploy/lint_rendered.py "$name" "$file" || fail "$dir: deployment policy"
    fi
done

# --- 3: compose -----------------------------------------------------------------------------
compose_env=(EDGECART_BOOTSTRAP_TOKEN=x EDGECART_ADMIN_TOKEN=x EDGECART_ADMIN_PASSWORD=x)
if docker compose version >/dev/null 2>&1; then
    env "${compose_env[@]}" docker compose -f deploy/compose.yaml config --quiet \
        && step "deploy/compose.yaml: docker compose config ok" || fail "deploy/compose.yaml"
else
    if "$PYTHON" - <<'PY'
import yaml
c = yaml.safe_load(open("deploy/compose.yaml"))
s = c["services"]
assert set(s) == {"edgecart-hub", "store-1", "store-2"}, s.keys()
assert s["edgecart-hub"]["entrypoint"] == ["/usr/local/bin/edgecart-hub"]
for n in ("store-1", "store-2"):
    assert s[n]["entrypoint"] == ["/usr/local/bin/edgecart-node"], n
    assert s[n]["environment"]["EDGECART_HUB_URL"] == "http://edgecart-hub:50051", n
    assert f"--node-id={n}" in s[n]["command"], n
for n, svc in s.items():
    assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"], n
    for v in svc["volumes"]:
        assert v.split(":")[0] in c["volumes"], (n, v)
PY
    then step "deploy/compose.yaml: YAML and wiring ok (no docker compose client here to run 'config')"
    else fail "deploy/compose.yaml"
    fi
fi

# --- 4: systemd -----------------------------------------------------------------------------
if ! command -v systemd-analyze >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing Debian's systemd for systemd-analyze"
    (apt-get install -y -qq --no-install-recommends systemd >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends systemd >/dev/null 2>&1; }) || true
fi
if command -v systemd-analyze >/dev/null 2>&1; then
    unit=deploy/systemd/edgecart-node.service
    # verify needs ExecStart's binary to exist: point it at a stub, change nothing else
    mkdir -p "$out/systemd"
    printf '#!/bin/sh\nexit 0\n' >"$out/systemd/edgecart-node" && chmod +x "$out/systemd/edgecart-node"
    sed "s|/usr/local/bin/edgecart-node|$out/systemd/edgecart-node|" "$unit" >"$out/systemd/edgecart-node.service"
    if msgs=$(systemd-analyze verify "$out/systemd/edgecart-node.service" 2>&1) && [ -z "$msgs" ]; then
        step "$unit: systemd-analyze verify ok ($(systemd-analyze --version | head -1))"
    elif [ -n "${msgs:-}" ] && grep -qiE 'Failed to (initialize|connect|create).*(manager|bus)' <<<"$msgs"; then
        step "$unit: SKIPPED, systemd-analyze cannot run in this container: $msgs"
    else
        echo "$msgs" >&2
        fail "$unit: systemd-analyze verify"
    fi
    if systemd-analyze security --offline=true --threshold=15 "$out/systemd/edgecart-node.service" >"$out/security.txt" 2>&1; then
        step "$unit: $(grep -o 'Overall exposure level.*' "$out/security.txt")"
    else
        cat "$out/security.txt" >&2
        fail "$unit: systemd-analyze security exposure above 1.5"
    fi
else
    step "deploy/systemd: SKIPPED, systemd-analyze is not available and could not be installed"
fi

# --- 5: monitoring ---------------------------------------------------------------------------
mon=deploy/monitoring
if command -v promtool >/dev/null 2>&1; then
    promtool check rules "$mon/prometheus/alerts.yml" >/dev/null \
        && step "$mon/prometheus/alerts.yml: promtool check rules ok" || fail "$mon/prometheus/alerts.yml"
    (cd "$mon/prometheus" && promtool test rules alerts_test.yml >/dev/null) \
        && step "$mon/prometheus/alerts_test.yml: promtool test rules ok" || fail "$mon/prometheus/alerts_test.yml"
    if msgs=$(promtool check config "$mon/prometheus/prometheus.yml" 2>&1); then
        step "$mon/prometheus/prometheus.yml: promtool check config ok"
    elif grep -q 'kubernetes_sd_configs not found' <<<"$msgs"; then
        step "$mon/prometheus/prometheus.yml: SKIPPED, this promtool is built without Kubernetes service discovery"
    else
        echo "$msgs" >&2
        fail "$mon/prometheus/prometheus.yml"
    fi
else
    fail "promtool is not installed (Debian package prometheus)"
fi
for f in "$mon"/grafana/dashboards/*.json; do
    "$PYTHON" -m json.tool "$f" >/dev/null && step "$f: valid JSON" || fail "$f: not JSON"
done
regen=$(mktemp -d)
cp -r "$mon" "$regen/monitoring"
"$PYTHON" "$regen/monitoring/gen_dashboards.py"
diff -r "$mon/grafana/dashboards" "$regen/monitoring/grafana/dashboards" >/dev/null \
    && step "$mon/grafana/dashboards: up to date with gen_dashboards.py" \
    || fail "$mon/grafana/dashboards differ from what gen_dashboards.py writes: run it"
rm -rf "$regen"

if [ "$failed" != 0 ]; then
    echo "== deploy: FAILED" >&2
    exit 1
fi
step "all checks passed"
