#!/usr/bin/env bash
# Builds the Worker: build/index.js + build/index_bg.wasm, as worker-build
# emits them, and build/entry.js, the entry module in front of them. worker-build would download wasm-bindgen, wasm-opt and esbuild;
# it is pointed at the pinned local ones instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The script the Worker embeds: static/loader.js minified (committed; `make check` verifies it).
node scripts/loader.mjs
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/@esbuild/linux-x64/bin/esbuild}"
worker-build --release
# The entry module wrangler and Miniflare load; it imports worker-build's index.js.
cp src/entry.js build/entry.js
