# Everyday targets. The README's two commands are `make run` and `make test`.
.PHONY: run test test-rust test-e2e bench bench-smoke battery soak site site-release watch lint audit fmt tools

# Build everything (release) and run the relay with its admin on the embedded store.
run: tools site-release
	./target/release/crs

# Every test: Rust unit and integration tests (both store engines, a throwaway redis-server),
# then the browser and Claude Code end-to-end tests.
test: tools
	./scripts/setup-tools.sh --e2e
	$(MAKE) test-rust test-e2e bench-smoke

test-rust:
	cargo test -p app -p server

test-e2e: site
	cd end2end && npx playwright test

site:
	./scripts/build-site.sh

# Benchmarks (release builds; figures in the README): relay overhead under load against the
# mock upstream, and the admin pages with 10,000 keys and 1,000,000 recorded requests.
bench:
	cargo bench -p server --bench relay_load
	cargo bench -p server --bench admin_pages

# The attack battery in full, with its figures (README, "Attack battery").
battery:
	BATTERY=full cargo test -p server --test attack_auth --test attack_relay -- --nocapture --test-threads=1

# Ten minutes of mixed traffic with injected faults; the books must balance (exit 1 if not).
soak:
	cargo bench -p server --bench soak

# The benchmarks still run end to end (debug build, seconds, figures meaningless).
bench-smoke:
	cargo bench -p server --profile dev --bench relay_load -- --quick --seconds 1 --concurrency 1,4
	cargo bench -p server --profile dev --bench admin_pages -- --keys 200 --requests 5000 --samples 2
	cargo bench -p server --profile dev --bench soak -- --seconds 2 --workers 8

site-release:
	./scripts/build-site.sh --release

# Development with live reload (installs cargo-leptos 0.3.10 the first time).
watch: tools
	./scripts/setup-tools.sh --watch
	cargo leptos watch

lint: tools
	./scripts/setup-tools.sh --lint
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings
	# Licenses, banned and unknown sources. (Advisories: `make audit`, which needs the RustSec
	# database from GitHub or a local clone of it.)
	# (cargo-deny reads the metadata of every target's crates: fetch them first.)
	cargo fetch --locked
	cargo deny --offline check licenses bans sources

# Known vulnerabilities (RustSec). Fetches the database from GitHub, or uses a local clone:
# `make audit ADVISORY_DB=/path/to/advisory-db`.
audit: tools
	./scripts/setup-tools.sh --lint
ifdef ADVISORY_DB
	mkdir -p target/advisory-dbs
	ln -sfn "$(abspath $(ADVISORY_DB))" target/advisory-dbs/advisory-db-3157b0e258782691
	sed 's|^db-urls = .*|&\ndb-path = "target/advisory-dbs"|' deny.toml > target/deny-audit.toml
	cargo deny --offline --config target/deny-audit.toml check advisories
else
	cargo deny check advisories
endif

fmt:
	cargo fmt --all

tools:
	./scripts/setup-tools.sh

# The container image (multi-stage Dockerfile: site + release binary, run as user crs), and the
# relay with Redis under Docker Compose (configuration from .env; ENCRYPTION_KEY required).
.PHONY: docker docker-up
DOCKER_IMAGE ?= crs:latest

docker:
	docker build -t $(DOCKER_IMAGE) .

docker-up:
	docker compose up -d --build
