# syntax=docker/dockerfile:1
# The production image: the compiled daemon (dist/) on Node 22 LTS, production dependencies only.
# glibc base: DuckDB's native binding is built for glibc, it does not load on musl (Alpine).
ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="inference-importer" \
      org.opencontainers.image.description="Imports ML inference data (predictions and delayed actuals) from S3 into an inference store" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${NODE_IMAGE}"
# tini as PID 1 forwards SIGTERM to node and reaps children, so the daemon's ordered shutdown runs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 importer \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin importer \
 && mkdir -p /data /etc/inference-importer \
 && chown 10001:10001 /data
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY config/importer.yaml /etc/inference-importer/importer.yaml
# Everything written at run time goes to /data (the DuckDB store and its spill files next to it) and
# /tmp (downloads): mount both as volumes and the root filesystem can be read-only.
ENV NODE_ENV=production \
    HOME=/tmp \
    TMPDIR=/tmp \
    IMPORTER_CONFIG=/etc/inference-importer/importer.yaml
VOLUME ["/data", "/tmp"]
# Relative paths in a config (the example's ./data/inferences.duckdb) resolve under the writable /data.
WORKDIR /data
USER 10001:10001
EXPOSE 8080
# IMPORTER_HTTP_PORT: set it when the config's http.port is not 8080 (only the health check reads it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.IMPORTER_HTTP_PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "--enable-source-maps", "/app/dist/cli.js"]
CMD ["run"]
