# syntax=docker/dockerfile:1
# The crs image: the relay binary, its admin site and the bundled pricing table on Debian slim,
# run as the unprivileged user `crs`.
#
#   docker build -t crs .            (or: make docker)
#   docker compose up -d             (the relay and Redis; see docker-compose.yml)
#
# Build stage: the same tools and script as a developer machine (scripts/setup-tools.sh installs
# the wasm32 target, the wasm-bindgen CLI at the version Cargo.lock pins, and the npm tools;
# scripts/build-site.sh --release builds the site and the release binary).

ARG RUST_IMAGE=rust:1-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${NODE_IMAGE} AS node

FROM ${RUST_IMAGE} AS builder
# Node.js and npm for the Tailwind compiler and wasm-opt (binaryen) from the npm registry.
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -sf ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -sf ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && node --version && npm --version
WORKDIR /src
# The tools first: this layer stays cached while Cargo.lock and package-lock.json do not change.
COPY Cargo.lock package.json package-lock.json ./
COPY scripts/setup-tools.sh scripts/setup-tools.sh
RUN ./scripts/setup-tools.sh
COPY . .
RUN ./scripts/build-site.sh --release \
    && strip target/release/crs \
    && test -f target/site/pkg/crs.wasm

FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 crs \
    && useradd --system --uid 10001 --gid crs --home-dir /app --shell /usr/sbin/nologin crs \
    && mkdir -p /app/data \
    && chown crs:crs /app/data
WORKDIR /app
COPY --from=builder /src/target/release/crs /usr/local/bin/crs
COPY --from=builder /src/target/site /app/site
# Owned by crs so that `crs pricing update` can replace the table in place.
COPY --chown=crs:crs resources /app/resources
ENV HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/app/data \
    SITE_ROOT=/app/site \
    PRICING_FILE=/app/resources/model-pricing/model_prices_and_context_window.json \
    LOG_FORMAT=json
USER crs
EXPOSE 3000
VOLUME ["/app/data"]
# The binary checks its own /health (no curl in the image): exit 0 healthy, 1 not.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["crs", "healthcheck", "--timeout", "4"]
# tini forwards SIGTERM to crs, which drains in-flight streams (up to 30 s) before exiting.
ENTRYPOINT ["tini", "--", "crs"]
CMD ["serve"]
