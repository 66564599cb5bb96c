# raftkv: one image for every role. The argument picks it:
#   podman run IMAGE replica --id n1 ...   | logger | loadgen | operator | recovery | restore | local
# Build: docker build -t raftkv:dev .   (here: ../shared/tools/container/podman.sh build -t localhost/raftkv:dev .)

# ---- build: dev dependencies, TypeScript -> dist/
FROM docker.io/library/node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY raft raft
COPY replica replica
COPY logger logger
COPY loadgen loadgen
COPY operator operator
COPY local local
COPY experiment experiment
COPY discovery discovery
COPY util util
COPY examples examples
COPY bench bench
COPY test test
COPY scripts scripts
COPY cli.ts ./
RUN npx tsc -p tsconfig.json && rm -rf dist/test dist/bench dist/examples dist/.tsbuildinfo && find dist -name '*.map' -delete

# ---- production dependencies only
FROM docker.io/library/node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Only what runs: no type declarations, source maps, TypeScript sources or docs.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force \
 && find node_modules \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.ts' -o -name '*.md' -o -name '*.markdown' \) -type f -delete \
 && find node_modules -type d \( -name test -o -name tests -o -name __tests__ -o -name docs -o -name example -o -name examples \) -prune -exec rm -rf {} +

# ---- the image
FROM docker.io/library/node:24-bookworm-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="raftkv" \
      org.opencontainers.image.description="A Raft-replicated key-value store with a decoupled logger and a Kubernetes operator" \
      org.opencontainers.image.source="https://github.com/raftkv/raftkv" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MPL-2.0"
WORKDIR /app
COPY --from=deps /app/node_modules node_modules
COPY --from=build /src/dist dist
COPY package.json ./
COPY deploys deploys
# The data directory of whichever role runs here; a volume in Kubernetes.
RUN mkdir -p /data && chown node:node /data
USER node
ENV NODE_ENV=production
# client, raft, HTTP/join (the seed's ports), recov, logger HTTP, operator metrics
EXPOSE 11000 12000 13000 14000 14001 8080
# node is PID 1 here: every role stops cleanly on SIGTERM/SIGINT itself (tested), and no role
# forks children that could be orphaned, so no init shim is needed. Pass --init to docker/podman
# run if you add one that does.
ENTRYPOINT ["node", "/app/dist/cli.js"]
CMD ["--help"]
