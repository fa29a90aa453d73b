# Steps of `docker/smoke.sh --platform linux/arm64`: the node's image of another architecture, run where it is
# (natively on an arm64 host, under qemu on an x86 one). Sourced by docker/smoke.sh, which gives the step runner
# and the helpers (run_step, wait_healthy, json_field, node_exec, free_port, ...).
#
#   docker/smoke.sh --platform linux/arm64                            # build edge-node:mainnet-arm64, then test it
#   docker/smoke.sh --platform linux/arm64 --image localhost:5000/edge-node:mainnet   # pull that platform and test it
#
# Steps: the image (build, or pull --platform), what runs inside (machine, Python, onnxruntime, OpenCV), a broker
# (amd64 Mosquitto, as on a mixed network), the node started with the demo pipeline, healthy, a heartbeat at the
# client naming the architecture, docker exec get_node_info, the demo pipeline's signed payloads, a model
# pipeline (TEXT_DETECTOR on PP_OCR_DETECTOR: onnxruntime in a model server process of that architecture), and a
# clean docker stop. Under emulation every step is several times slower than natively (qemu translates each
# instruction): its timings are not performance figures. EMULATED_TIMEOUT (default 900 s) bounds the waits.

PLATFORM_ARCH="${PLATFORM#linux/}"; PLATFORM_ARCH="${PLATFORM_ARCH%%/*}"
HOST_ARCH="$(dpkg --print-architecture 2>/dev/null || uname -m)"
RUN_MODE="native"
[ "$PLATFORM_ARCH" = "$HOST_ARCH" ] || RUN_MODE="emulated (qemu, binfmt_misc)"
WAIT="${EMULATED_TIMEOUT:-900}"
[ "$RUN_MODE" = native ] && WAIT=120
MQTT_CONTAINER="$P-mqtt" NETWORK="$P-net" NODE_ALIAS="smoke-$PLATFORM_ARCH"   # aliases stop at 15 characters
STOP_LIMIT=5
[ "$RUN_MODE" = native ] || STOP_LIMIT=30   # the same 5 s native limit, with qemu's slowness as margin
platform_cleanup() {
  docker rm -f "$MQTT_CONTAINER" >/dev/null 2>&1
  docker network rm "$NETWORK" >/dev/null 2>&1
}
trap 'platform_cleanup; cleanup' EXIT

wait_until() {  # wait_until SECONDS WHAT COMMAND...: retry COMMAND every second until it succeeds
  local limit="$1" what="$2" t0; shift 2; t0="$(now)"
  until "$@"; do
    awk -v t="$(elapsed "$t0")" -v m="$limit" 'BEGIN { exit !(t > m) }' && { fail "$what: not within $limit s"; return 1; }
    sleep 1
  done
}

step_platform_image() {
  local info
  case "$PLATFORM_ARCH" in amd64|arm64) ;; *) fail "--platform must be linux/amd64 or linux/arm64"; return 1 ;; esac
  if [ -z "$IMAGE" ]; then
    IMAGE="$(docker/build.sh --platform "$PLATFORM" "${BUILD_OPTS[@]}" | tail -1)" || return 1
    info="built $IMAGE"
  elif [[ "$IMAGE" == */* ]] && [[ "${IMAGE%%/*}" == *[.:]* ]]; then   # REGISTRY/NAME:TAG: pull that platform
    docker pull -q --platform "$PLATFORM" "$IMAGE" >/dev/null || return 1
    info="docker pull --platform $PLATFORM $IMAGE"
  else
    info="using $IMAGE"
  fi
  local actual; actual="$(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$IMAGE")" || return 1
  [ "$actual" = "linux/$PLATFORM_ARCH" ] || { fail "$IMAGE is $actual, not linux/$PLATFORM_ARCH"; return 1; }
  DETAIL="$info: $actual, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }'), run $RUN_MODE on this $HOST_ARCH host"
}
step_platform_inside() {
  docker run --rm --entrypoint python3 "$IMAGE" -c '
import platform, cv2, numpy, onnxruntime
print(f"{platform.machine()}: Python {platform.python_version()}, onnxruntime {onnxruntime.__version__} "
      f"{onnxruntime.get_available_providers()}, OpenCV {cv2.__version__}, numpy {numpy.__version__}")' \
    | tee "$WORK/inside.txt" || return 1
  local machine; machine="$(cut -d: -f1 "$WORK/inside.txt")"
  case "$PLATFORM_ARCH:$machine" in arm64:aarch64|amd64:x86_64) ;; *) fail "the container runs on $machine"; return 1 ;; esac
  DETAIL="$(cat "$WORK/inside.txt")"
}
step_platform_broker() {
  local image=eclipse-mosquitto:2
  if ! docker image inspect "$image" >/dev/null 2>&1 && ! timeout 60 docker pull -q "$image" >/dev/null 2>&1; then
    image=edge-node-mosquitto:local
    if ! docker image inspect "$image" >/dev/null 2>&1; then
      export BASE_IMAGE="${BASE:-edge-node-base:trixie}"
      docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || docker/build-base.sh "$BASE_IMAGE" || return 1
      STACK_FILES+=(-f docker-compose/docker-compose.local-images.yml)
      compose build mqtt || return 1
    fi
  fi
  MQTT_PUBLISHED_PORT="$(free_port)"
  docker network create "$NETWORK" >/dev/null || return 1
  docker run -d --name "$MQTT_CONTAINER" --network "$NETWORK" -p "127.0.0.1:$MQTT_PUBLISHED_PORT:1883" \
    -v "$REPO/docker-compose/mosquitto/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" "$image" >/dev/null || return 1
  DETAIL="$image ($(docker image inspect -f '{{.Architecture}}' "$image")) on 127.0.0.1:$MQTT_PUBLISHED_PORT"
}
step_platform_run() {
  docker volume create "$VOLUME" >/dev/null || return 1
  docker run -d --name "$NODE" --network "$NETWORK" --shm-size 1g -e EE_DEMO=1 -e EE_ID="$NODE_ALIAS" \
    -e EE_MQTT_HOST="$MQTT_CONTAINER" -e EE_MQTT_PORT=1883 -v "$VOLUME:/edge_node/_local_cache" "$IMAGE" >/dev/null || return 1
  local seconds; seconds="$(wait_healthy "$NODE" "$WAIT")" || return 1
  DETAIL="docker run -d (demo pipeline on, broker $MQTT_CONTAINER): healthy ${seconds} s after the container started"
}
step_platform_heartbeat() {
  [ -x .venv/bin/edge-client ] || (source scripts/_venv.sh) || return 1
  CLIENT="$REPO/.venv/bin/edge-client"
  timeout 120 "$CLIENT" --key "$WORK/client.pem" --port "$MQTT_PUBLISHED_PORT" watch --heartbeats --count 1 \
    >"$WORK/heartbeat.jsonl" || { fail "no heartbeat in 120 s"; return 1; }
  DETAIL="$(python3 - "$WORK/heartbeat.jsonl" "$NODE_ALIAS" <<'EOF'
import json, sys
record = next(json.loads(line) for line in open(sys.argv[1]) if line.startswith("{"))
message = record["message"]
assert record["verified"] and message["EE_ID"] == sys.argv[2], (record["verified"], message.get("EE_ID"))
print(f"signed heartbeat from {message['EE_ID']} at the client: CPU {message.get('CPU')}, Python {message.get('PY_VER')}")
EOF
)" || return 1
}
step_platform_get_node_info() {
  node_exec get_node_info >"$WORK/info.json" || return 1
  DETAIL="$(json_field '"address %s, alias %s, comms connected %s, pipelines %s" % (d["address"][:16] + "...", d["alias"], d["comms"]["connected"], [p["name"] for p in d["pipelines"]])' <"$WORK/info.json")" || return 1
  json_field '"demo" in [p["name"] for p in d["pipelines"]]' <"$WORK/info.json" | grep -q True || { fail "no demo pipeline"; return 1; }
}
step_platform_demo() {
  timeout "$WAIT" "$CLIENT" --key "$WORK/client.pem" --port "$MQTT_PUBLISHED_PORT" watch --node "$NODE_ALIAS" \
    --payloads --count 2 >"$WORK/demo.jsonl" || { fail "fewer than 2 demo payloads in $WAIT s"; return 1; }
  local inputs
  inputs="$(node_exec get_node_info | json_field '[p["capture"]["inputs"] for p in d["pipelines"] if p["name"] == "demo"][0]')"
  DETAIL="$(python3 - "$WORK/demo.jsonl" <<'EOF'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
assert len(records) >= 2 and all(r["verified"] for r in records), records
paths = sorted({"/".join(r["message"]["EE_PAYLOAD_PATH"][1:]) for r in records})
print(f"{len(records)} signed payloads ({', '.join(paths)})", end="")
EOF
)" || return 1
  DETAIL="$DETAIL; $inputs frames of samples/demo.mp4 read"
}
model_results() {  # model_results SIGNATURE: the results its model server gave so far (0 when none yet)
  node_exec get_node_info | json_field "sum(s.get('results', 0) for s in d['models']['servers'] if s['signature'] == '$1')"
}
step_platform_model() {
  # under emulation one 480-pixel frame through PP-OCRv6 takes longer than the default INFERENCE_TIMEOUT (30 s):
  # smaller frames and a longer timeout there (the model and the code path are the same)
  local side=480 timeout=30
  [ "$RUN_MODE" = native ] || { side=160; timeout=600; }
  cat >"$WORK/model.json" <<EOF
{"NAME": "text", "TYPE": "VIDEO_FILE", "URL": "samples/demo.mp4", "LOOP": true, "REALTIME": true, "CAP_RESOLUTION": 1,
 "PLUGINS": [{"SIGNATURE": "TEXT_DETECTOR", "INSTANCES": [{"INSTANCE_ID": "ocr",
   "STARTUP_AI_ENGINE_PARAMS": {"LIMIT_SIDE": $side, "WORKERS": 1, "INFERENCE_TIMEOUT": $timeout}}]}]}
EOF
  docker cp "$WORK/model.json" "$NODE:/tmp/model.json" || return 1
  local t0; t0="$(now)"
  node_exec deploy /tmp/model.json | tee "$WORK/deploy-model.txt" || return 1
  grep -q "applied" "$WORK/deploy-model.txt" || return 1
  model_has_results() { [ "$(model_results PP_OCR_DETECTOR)" -ge 3 ] 2>/dev/null; }
  wait_until "$WAIT" "3 results from PP_OCR_DETECTOR" model_has_results || return 1
  local took; took="$(elapsed "$t0")"
  node_exec get_node_info >"$WORK/models.json" || return 1
  DETAIL="TEXT_DETECTOR on samples/demo.mp4: PP_OCR_DETECTOR's server $(json_field '"; ".join("%s, %s, %s results, %s errors, providers %s" % (s["model"], s["state"], s["results"], s["errors"], s["providers"]) for s in d["models"]["servers"] if s["signature"] == "PP_OCR_DETECTOR")' <"$WORK/models.json"); LIMIT_SIDE $side, 3 results $took s after the deploy"
}
step_platform_stop() {
  local t0 took code
  t0="$(now)"
  docker stop -t 60 "$NODE" >/dev/null || return 1
  took="$(elapsed "$t0")"; code="$(docker inspect -f '{{.State.ExitCode}}' "$NODE")"
  docker logs --tail 3 "$NODE"
  [ "$code" = 0 ] || { fail "exit code $code"; return 1; }
  awk -v t="$took" -v m="$STOP_LIMIT" 'BEGIN { exit !(t <= m) }' || { fail "docker stop took $took s (> $STOP_LIMIT s)"; return 1; }
  DETAIL="docker stop took $took s (limit $STOP_LIMIT s $RUN_MODE) with the demo and model pipelines running, exit code 0"
}

run_platform_steps() {
  echo "edge node smoke test, $PLATFORM image on this $HOST_ARCH host ($RUN_MODE): docker $(docker version -f '{{.Server.Version}}' 2>/dev/null), $(date -u +%Y-%m-%dT%H:%M:%SZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
  [ "$RUN_MODE" = native ] || echo "      timings under emulation are not performance figures: qemu runs every instruction in software"
  local started_all; started_all="$(now)"
  run_step image step_platform_image
  run_step inside step_platform_inside
  run_step broker step_platform_broker
  run_step run-healthy step_platform_run
  run_step heartbeat step_platform_heartbeat
  run_step exec-get_node_info step_platform_get_node_info
  run_step demo-pipeline step_platform_demo
  run_step model-pipeline step_platform_model
  run_step stop step_platform_stop
  if [ -n "$FAILED" ]; then
    echo "FAIL  smoke test ($PLATFORM, $RUN_MODE) failed at step $FAILED after $(elapsed "$started_all") s"
    exit 1
  fi
  echo "PASS  all steps ($PLATFORM, $RUN_MODE) in $(elapsed "$started_all") s"
  exit 0
}
