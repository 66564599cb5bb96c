#!/usr/bin/env bash
# npm run test:image: build the image with podman (../shared/tools/container) and run, as
# containers on the host network, a 3-replica cluster, a logger and a short load generator;
# check they form a cluster, serve, log and stop cleanly on SIGTERM; then remove everything.
# Prints the build time and the image size. Not in `npm test` (the build takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${CONTAINER_TOOLS:-../shared/tools/container}
[ -x "$TOOLS/podman.sh" ] || [ -f "$TOOLS/podman.sh" ] || { echo "test:image: no $TOOLS/podman.sh (set CONTAINER_TOOLS)" >&2; exit 2; }
PODMAN="bash $TOOLS/podman.sh"
IMAGE=localhost/raftkv:imagetest
BASE=$(sed -n 's/^FROM \([^ ]*\).*/\1/p' Dockerfile | head -1)
RUN_ID=rkvimg$$
CONTAINERS=()
say() { printf 'test:image: %s\n' "$*"; }
fail() { say "FAIL: $*"; for c in "${CONTAINERS[@]}"; do echo "--- logs of $c"; podman logs "$c" 2>&1 | tail -20; done; exit 1; }
cleanup() {
  for c in "${CONTAINERS[@]}"; do podman rm -f -t 2 "$c" >/dev/null 2>&1 || true; done
  [ "${KEEP_IMAGE:-}" = 1 ] || podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
}
trap cleanup EXIT

if ! podman image exists "$BASE" 2>/dev/null; then
  say "making the local stand-in for $BASE"
  bash "$TOOLS/base.sh" "$BASE" >/dev/null
fi
t0=$(date +%s)
$PODMAN build -q -t "$IMAGE" . >"/tmp/$RUN_ID-build.log" 2>&1 || { tail -30 "/tmp/$RUN_ID-build.log"; fail "the build failed"; }
rm -f "/tmp/$RUN_ID-build.log"
t1=$(date +%s)
size=$(podman image inspect "$IMAGE" --format '{{.Size}}')
say "built $IMAGE in $((t1 - t0)) s: $((size / 1000000)) MB unpacked (base $BASE: $(( $(podman image inspect "$BASE" --format '{{.Size}}') / 1000000 )) MB)"
[ "$(podman image inspect "$IMAGE" --format '{{.Config.User}}')" = node ] || fail "the image does not run as the node user"
podman image inspect "$IMAGE" --format '{{index .Labels "org.opencontainers.image.source"}}' | grep -q . || fail "no OCI source label"
# Every role's command is in the image (a source folder left out of the build is missing here).
for role in replica logger loadgen operator recovery restore local experiment; do
  $PODMAN run --rm "$IMAGE" "$role" --help >/dev/null 2>&1 || fail "raftkv $role --help fails in the image"
done
say "every role's command answers --help"

# Ports on 127.0.0.1 shared with the host: a base no one is likely to use.
B=$(( 30000 + ($$ % 200) * 100 ))
peers="n1=127.0.0.1:$((B + 11)),n2=127.0.0.1:$((B + 12)),n3=127.0.0.1:$((B + 13))"
for i in 1 2 3; do
  name=$RUN_ID-n$i
  $PODMAN run -d --name "$name" "$IMAGE" replica --id n$i --port 127.0.0.1:$((B + i)) --raft 127.0.0.1:$((B + 10 + i)) \
    --http 127.0.0.1:$((B + 20 + i)) --peers "$peers" --data-dir /data/raft >/dev/null
  CONTAINERS+=("$name")
done
leader=""
for _ in $(seq 1 100); do
  leader=$(curl -fs "http://127.0.0.1:$((B + 21))/v1/status" | sed -n 's/.*"leader":"\([^"]*\)".*/\1/p' || true)
  [ -n "$leader" ] && break
  sleep 0.2
done
[ -n "$leader" ] || fail "no leader within 20 s"
say "3 replicas formed a cluster: $leader leads"
curl -fs -XPUT "http://127.0.0.1:$((B + 21))/v1/kv/greeting" -d 'hello from a container' >/dev/null || fail "write refused"
got=$(curl -fs "http://127.0.0.1:$((B + 23))/v1/kv/greeting" || true)
printf '%s' "$got" | grep -q '"value":"hello from a container"' || fail "read through n3 gave '$got'"
say "a write through n1 is read back through n3"

name=$RUN_ID-log
$PODMAN run -d --name "$name" "$IMAGE" logger --id log0 --raft 127.0.0.1:$((B + 31)) --join "127.0.0.1:$((B + 21))|127.0.0.1:$((B + 22))" \
  --logfolder /data/logger --recov 127.0.0.1:$((B + 32)) --http 127.0.0.1:$((B + 33)) >/dev/null
CONTAINERS+=("$name")

out=$($PODMAN run --rm --name "$RUN_ID-lg" "$IMAGE" loadgen --targets "127.0.0.1:$((B + 1)),127.0.0.1:$((B + 2)),127.0.0.1:$((B + 3))" \
  --clients 4 --duration 3 --write-ratio 1 --json - --quiet) || fail "the load generator failed"
answered=$(printf '%s' "$out" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s.slice(s.indexOf("{")));console.log(r.answered, r.errors + r.timeouts)})')
set -- $answered
[ "${1:-0}" -gt 0 ] && [ "${2:-1}" -eq 0 ] || fail "load generator: answered ${1:-?}, errors ${2:-?}: $out"
say "the load generator ran 3 s: $1 requests answered, 0 errors"

commit=$(curl -fs "http://127.0.0.1:$((B + 21))/v1/status" | sed -n 's/.*"commitIndex":\([0-9]*\).*/\1/p')
logged=0
for _ in $(seq 1 100); do
  logged=$(curl -fs "http://127.0.0.1:$((B + 33))/v1/log" | sed -n 's/.*"last":\([0-9]*\).*/\1/p' || echo 0)
  [ "${logged:-0}" -ge "$commit" ] && break
  sleep 0.2
done
[ "${logged:-0}" -ge "$commit" ] || fail "the logger holds up to ${logged:-0}, the cluster committed $commit"
say "the logger holds the committed log up to $logged"

for c in "${CONTAINERS[@]}"; do
  t=$(date +%s%N)
  podman stop -t 10 "$c" >/dev/null
  code=$(podman inspect "$c" --format '{{.State.ExitCode}}')
  [ "$code" = 0 ] || fail "$c exited $code on SIGTERM"
  say "$c stopped on SIGTERM in $(( ($(date +%s%N) - t) / 1000000 )) ms, exit 0"
done
say "PASS"
