#!/usr/bin/env bash
# Install the Azurite blob emulator (pinned) into the project-local .cache/npm.
#
# Used by the Azure store tests (asyncarr/testing/_servers_azure.py), which look
# for .cache/npm/node_modules/.bin/azurite-blob (or $ASYNCARR_AZURITE_BLOB).
# Idempotent: does nothing when the pinned version is already installed.
set -euo pipefail

AZURITE_VERSION="${AZURITE_VERSION:-3.35.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/.cache/npm"
PKG_JSON="$PREFIX/node_modules/azurite/package.json"
BIN="$PREFIX/node_modules/.bin/azurite-blob"

if ! command -v npm >/dev/null 2>&1; then
    echo "install-azurite: npm is not installed (Azurite needs Node.js >= 18 and npm)" >&2
    exit 1
fi

installed=""
if [[ -f "$PKG_JSON" ]]; then
    installed="$(node -p "require('$PKG_JSON').version" 2>/dev/null || true)"
fi

if [[ "$installed" == "$AZURITE_VERSION" && -x "$BIN" ]]; then
    echo "install-azurite: azurite $AZURITE_VERSION already installed in $PREFIX"
    exit 0
fi

mkdir -p "$PREFIX"
echo "install-azurite: installing azurite@$AZURITE_VERSION into $PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --save-exact --loglevel=error \
    "azurite@$AZURITE_VERSION"

if [[ ! -x "$BIN" ]]; then
    echo "install-azurite: $BIN missing after install" >&2
    exit 1
fi
echo "install-azurite: ok ($BIN)"
