# Everyday targets. The README's two commands are `make run` and `make test`.
.PHONY: run test test-rust test-e2e site site-release watch lint fmt tools

# Build everything (release) and run the relay with its admin on the embedded store.
run: tools site-release
	./target/release/crs

# Every test: Rust unit and integration tests (both store engines, a throwaway redis-server),
# then the browser and Claude Code end-to-end tests.
test: tools
	./scripts/setup-tools.sh --e2e
	$(MAKE) test-rust test-e2e

test-rust:
	cargo test -p app -p server

test-e2e: site
	cd end2end && npx playwright test

site:
	./scripts/build-site.sh

site-release:
	./scripts/build-site.sh --release

# Development with live reload (installs cargo-leptos 0.3.10 the first time).
watch: tools
	./scripts/setup-tools.sh --watch
	cargo leptos watch

lint: tools
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings

fmt:
	cargo fmt --all

tools:
	./scripts/setup-tools.sh
