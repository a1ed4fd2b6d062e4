#!/usr/bin/env bash
# Builds the admin site (WASM + JS glue + CSS + public assets) into target/site and the `crs`
# binary, without cargo-leptos: the same output `cargo leptos build` produces.
#   scripts/build-site.sh            debug
#   scripts/build-site.sh --release  release (wasm-opt -Oz, minified CSS)
set -euo pipefail
cd "$(dirname "$0")/.."

release=false
[ "${1:-}" = "--release" ] && release=true
export PATH="$PWD/node_modules/.bin:$PATH"
export LEPTOS_OUTPUT_NAME=crs
site=target/site
pkg=$site/pkg

want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')
if [ "$want" != "$have" ]; then
  echo "build-site: wasm-bindgen CLI ${have:-missing}, Cargo.lock wants $want: run scripts/setup-tools.sh" >&2
  exit 1
fi

if $release; then
  cargo build -p frontend --lib --target wasm32-unknown-unknown --target-dir target/front --profile wasm-release
  wasm=target/front/wasm32-unknown-unknown/wasm-release/frontend.wasm
else
  cargo build -p frontend --lib --target wasm32-unknown-unknown --target-dir target/front
  wasm=target/front/wasm32-unknown-unknown/debug/frontend.wasm
fi

mkdir -p "$pkg"
wasm-bindgen --target web --no-typescript --out-dir "$pkg" --out-name crs "$wasm"
mv "$pkg/crs_bg.wasm" "$pkg/crs.wasm"
if $release; then
  # npm's binaryen: Debian's older wasm-opt produces WASM that breaks hydration.
  wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int "$pkg/crs.wasm" -o "$pkg/crs.wasm"
  tailwindcss -i style/tailwind.css -o "$pkg/crs.css" --minify
else
  tailwindcss -i style/tailwind.css -o "$pkg/crs.css"
fi
cp -r public/. "$site/"

if $release; then
  cargo build -p server --release
else
  # The end-to-end run also starts the mock upstream, which only a test-support build has.
  cargo build -p server --features test-support
fi
echo "build-site: site in $site, binary in target/$($release && echo release || echo debug)/crs"
