#!/usr/bin/env sh
# Installs the Node.js example client's dependencies (examples/node/node_modules) exactly as package-lock.json
# pins them. Run from anywhere; needs node and npm. Used by the test suite (tests/e2e/test_node_client.py).
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
