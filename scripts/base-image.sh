#!/usr/bin/env bash
# Local base images for a Docker host that cannot pull from an image registry (air-gapped hospital
# hosts, CI machines): everything comes from a Debian mirror.
#
#   scripts/base-image.sh            # build what is missing or out of date
#   scripts/base-image.sh --force    # rebuild all three
#
# Makes (docker images):
#   cardiosynth/debian:bookworm   debootstrap --variant=minbase, imported with `docker import`
#   cardiosynth/python:3.11       Debian's Python 3.11 + venv: the BASE_IMAGE build argument of docker/Dockerfile*
#   cardiosynth/redis:7           Debian's redis-server, for the compose override docker-compose.local.yml
# then build the stack with   BASE_IMAGE=cardiosynth/python:3.11 docker compose -f docker-compose.yml \
#   -f docker-compose.local.yml build
#
# Needs root, debootstrap (installed with apt-get when missing) and a running Docker engine. The
# mirror is the first Debian one named in this host's apt sources (DEBIAN_MIRROR overrides it); apt
# inside the image builds uses the host's network (`--network host`), since an engine started with
# its bridge disabled gives build containers none. debootstrap's packages are kept in a cache
# (CARDIOSYNTH_CACHE_DIR, default ~/.cache/cardiosynth) and an image is rebuilt only when its recipe
# (the files in docker/base/) changed.
set -euo pipefail
cd "$(dirname "$0")/.."

force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
  *) echo "base-image.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

suite=bookworm
debian_image=cardiosynth/debian:$suite
python_image=cardiosynth/python:3.11
redis_image=cardiosynth/redis:7
cache=${CARDIOSYNTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cardiosynth}
# What the images are made from: the files in docker/base/ and what this script does with them
# (RECIPE: change it with the debootstrap or pruning steps; comments and checks here rebuild nothing).
RECIPE=2
recipe=$( { echo "$RECIPE $suite minbase"; cat docker/base/*; } | sha256sum | cut -c1-16)

log() { echo "base-image: $*"; }

mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  # deb822 (.sources: "URIs: ...") and one-line ("deb URI suite ...") formats; the archive, not security.
  local uri
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | sed -nE 's/^URIs:[[:space:]]*//p; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' \
    | tr ' ' '\n' | grep -E '/debian/?$' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

current() {  # image $1 exists and was made from this recipe
  [ "$force" = 0 ] && [ "$(docker image inspect -f '{{ index .Config.Labels "org.cardiosynth.recipe" }}' "$1" 2>/dev/null)" = "$recipe" ]
}

t0=$(date +%s)
if current "$debian_image"; then
  log "$debian_image is up to date"
else
  command -v debootstrap >/dev/null 2>&1 || apt-get install -y -qq -o DPkg::Lock::Timeout=300 debootstrap \
    || { apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=300 debootstrap; }
  # Every write and every deletion below is on a path under $root, the debootstrap target made here,
  # and checked first (on_root): never the host's own files.
  root=$(mktemp -d "${TMPDIR:-/tmp}/cardiosynth-debootstrap.XXXXXXXX")
  on_root() {
    case "$root" in
      "" | / | //*) echo "base-image.sh: refusing to work on root '$root'" >&2; exit 1 ;;
    esac
    [ "$(cd "$root" && pwd -P)" != / ] && [ -d "$root" ] && [ ! -L "$root" ] \
      || { echo "base-image.sh: refusing to work on root '$root'" >&2; exit 1; }
  }
  remove_root() {
    on_root
    # A failed debootstrap may leave /proc or /sys mounted in the target: never delete through a mount.
    if awk -v r="$root/" 'index($2, r) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
      echo "base-image.sh: $root still has mounts; left in place" >&2
      return 0
    fi
    rm -rf --one-file-system -- "$root"
  }
  on_root
  trap remove_root EXIT
  mkdir -p "$cache/debootstrap"
  src=$(mirror)
  log "debootstrap $suite from $src"
  debootstrap --variant=minbase --cache-dir="$cache/debootstrap" "$suite" "$root" "$src" >"$cache/debootstrap.log" 2>&1 \
    || { tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }
  on_root
  [ -d "$root/etc/apt" ] && [ -d "$root/usr/share" ] && [ -x "$root/bin/sh" ] \
    || { echo "base-image.sh: debootstrap left no system in $root" >&2; exit 1; }
  # Small images, as Debian's own docker images are made: apt keeps no packages or caches, dpkg
  # installs no documentation, manuals or translations (copyright files stay). Copied into the
  # image's /etc (under $root): they act on apt and dpkg inside the image only.
  install -m 0644 docker/base/apt-docker-clean.conf "$root/etc/apt/apt.conf.d/docker-clean"
  install -m 0644 docker/base/dpkg-docker-slim.cfg "$root/etc/dpkg/dpkg.cfg.d/docker-slim"
  # The same pruning for what debootstrap installed: absolute paths under the checked $root only
  # (never relative to a working directory, never through a mount).
  on_root
  find "$root/usr/share/doc" -xdev -type f ! -name copyright -delete
  for dir in usr/share/man usr/share/info usr/share/locale var/lib/apt/lists; do
    [ -d "$root/$dir" ] && find "$root/$dir" -xdev -mindepth 1 -delete
  done
  find "$root/var/cache/apt" -xdev \( -name '*.deb' -o -name '*.bin' \) -type f -delete
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL org.cardiosynth.recipe=$recipe" --change 'CMD ["bash"]' - "$debian_image" >/dev/null
  remove_root
  trap - EXIT
  log "$debian_image imported ($(( $(date +%s) - t0 )) s)"
fi

for pair in "$python_image:Dockerfile.python" "$redis_image:Dockerfile.redis"; do
  image=${pair%:*}
  dockerfile=${pair##*:}
  if current "$image"; then
    log "$image is up to date"
    continue
  fi
  t1=$(date +%s)
  docker build --quiet --network host --build-arg "DEBIAN_IMAGE=$debian_image" \
    --label "org.cardiosynth.recipe=$recipe" -f "docker/base/$dockerfile" -t "$image" docker/base >/dev/null
  log "$image built ($(( $(date +%s) - t1 )) s)"
done
log "done in $(( $(date +%s) - t0 )) s: $(docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
  | grep -E "^($debian_image|$python_image|$redis_image) " | tr '\n' ' ')"
