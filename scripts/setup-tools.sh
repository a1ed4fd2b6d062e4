#!/usr/bin/env bash
# Installs what the build and the tests need, from the package registries only, and only what
# is missing or at the wrong version (a second run costs seconds).
#   scripts/setup-tools.sh          the build: wasm32 target, wasm-bindgen CLI, npm tools
#   scripts/setup-tools.sh --e2e    also Chromium (Debian) and the end-to-end test packages
#   scripts/setup-tools.sh --watch  also cargo-leptos 0.3.10 for `cargo leptos watch` (~15 min)
#   scripts/setup-tools.sh --lint   also cargo-deny (licenses, bans, sources)
set -euo pipefail
cd "$(dirname "$0")/.."

e2e=false
watch=false
lint=false
for arg in "$@"; do
  case "$arg" in
    --e2e) e2e=true ;;
    --watch) watch=true ;;
    --lint) lint=true ;;
    *) echo "setup-tools: unknown option $arg" >&2; exit 2 ;;
  esac
done

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

# The CLI must equal the wasm-bindgen crate in Cargo.lock exactly. (Its own --locked install
# fails on this registry, so it is installed unlocked at the pinned version.)
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$want" != "$have" ]; then
  cargo install wasm-bindgen-cli --version "$want" --force
fi

npm_ci() { # dir
  if [ ! -d "$1/node_modules" ] || [ "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]; then
    (cd "$1" && npm ci --no-audit --no-fund)
  fi
}
npm_ci .

if $e2e; then
  command -v redis-server >/dev/null || { apt-get update && apt-get install -y redis-server; }
  if [ ! -x /usr/bin/chromium ]; then
    apt-get update && apt-get install -y chromium chromium-driver
  fi
  npm_ci end2end
  # The official Python SDKs the end-to-end tests drive (PyPI).
  python3 -m pip install --quiet --disable-pip-version-check -r end2end/clients/requirements.txt
fi

if $watch && [ "$(cargo leptos --version 2>/dev/null | awk '{print $2}')" != "0.3.10" ]; then
  # 0.3.11 needs a newer rustc; no_downloads: never fetch tools from outside the registries.
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install cargo-leptos --version 0.3.10 --locked --features no_downloads
fi

if $lint && ! cargo deny --version >/dev/null 2>&1; then
  cargo install cargo-deny --version 0.20.2 --locked
fi
