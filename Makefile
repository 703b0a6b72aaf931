# The two commands that matter:
#   make dev    run the Worker locally (Miniflare: local KV, demo page, fake Segment; offline)
#   make test   run every test (installs what is missing first)
.PHONY: dev test build setup setup-browser setup-bench check unit js-tests size deploy-check bench fuzz screenshots

dev: build
	node dev/run.mjs

test: setup-browser check unit build size deploy-check js-tests

setup:
	bash scripts/setup.sh

setup-browser:
	bash scripts/setup.sh browser

build:
	bash scripts/build.sh

# Formatting and lints, native and for the Worker target.
check: setup
	node scripts/loader.mjs --check
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --lib --target wasm32-unknown-unknown -- -D warnings

# The pure core, natively.
unit:
	cargo test

# The wasm size budget (see BENCHMARKS.md).
size: build
	node scripts/size.mjs

# The built Worker in workerd (Miniflare): routes, KV, cron, faults, hostile
# input; and real analytics-next in headless Chromium against it.
js-tests: build
	node --test --test-reporter=spec tests/*.test.mjs

deploy-check: build
	WRANGLER_SEND_METRICS=false npx wrangler deploy --dry-run --outdir build/dry-run

setup-bench:
	bash scripts/setup.sh bench

# The pure core natively and as wasm in V8, then the built Worker vs
# pass-through JS Workers, through wrk and with each handler alone.
bench: setup-bench build
	cargo bench --bench core
	cargo build --release --target wasm32-unknown-unknown --manifest-path bench/wasm-core/Cargo.toml
	node bench/wasm-core/run.mjs
	node bench/run.mjs
	node bench/insitu.mjs

fuzz:
	bash scripts/fuzz.sh

# The README's pictures of the demo page (docs/*.png); not part of `make test`.
screenshots: setup-browser build
	node scripts/screenshots.mjs
