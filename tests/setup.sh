#!/usr/bin/env bash
# Installs what the test suite needs beyond a Rust toolchain (Debian, as root; each step is
# skipped when its tool is already there, so running it again is quick). README's test command
# runs it before `cargo test --workspace`; .ci/run runs that command.
set -euo pipefail
cd "$(dirname "$0")/.."

# The reliability suite uses `unshare` (util-linux: a private tmpfs for the hub's disk-full
# scenario) and `kill` (procps: pausing the hub to copy its database).
if ! type -P unshare >/dev/null || ! type -P kill >/dev/null; then
    apt-get update -qq && apt-get install -y -qq util-linux procps >/dev/null
fi
# promtool (Debian's prometheus package): the observability tests lint every scrape with
# `promtool check metrics`, and deploy/check.sh unit-tests the alert rules.
if ! type -P promtool >/dev/null; then
    apt-get update -qq && apt-get install -y -qq prometheus >/dev/null
fi

# The kiosk's browser test (tests/tests/kiosk.rs) drives Debian's Chromium with playwright-core
# and axe-core from npm; a Japanese font makes the 日本語 screenshots legible. The OpenAPI test
# (tests/tests/openapi.rs) runs openapi-spec-validator from PyPI.
kiosk_pkgs=()
type -P chromium >/dev/null || kiosk_pkgs+=(chromium chromium-driver)
fc-list :lang=ja 2>/dev/null | grep -q . || kiosk_pkgs+=(fonts-ipafont-gothic)
# playwright-core needs Node.js 20 or newer: these machines have it (NodeSource); Debian's own
# nodejs (18) is only the fallback.
type -P node >/dev/null || kiosk_pkgs+=(nodejs)
type -P npm >/dev/null || kiosk_pkgs+=(npm)
if [ ${#kiosk_pkgs[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${kiosk_pkgs[@]}" >/dev/null
fi
npm ci --prefix tests/browser --no-audit --no-fund
if ! python3 -c "import openapi_spec_validator" 2>/dev/null; then
    python3 -m pip --version >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null; }
    python3 -m pip install -q openapi-spec-validator 2>/dev/null ||
        python3 -m pip install -q --break-system-packages openapi-spec-validator
fi

