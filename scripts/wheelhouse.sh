#!/usr/bin/env bash
# Every Python wheel the images need, at the pinned versions (constraints.txt), in one folder that the
# Dockerfiles install from with `pip install --no-index --find-links`: images then build with no
# package index at all (air-gapped hosts, or build hosts whose containers cannot reach one).
#
#   scripts/wheelhouse.sh                  # CPU torch (the default; what the smoke test builds)
#   scripts/wheelhouse.sh --target cuda    # PyPI's Linux torch: the CUDA build and its nvidia-* wheels
#   scripts/wheelhouse.sh --s3-standin     # also moto's S3 server, the S3 stand-in of docker-compose.moto.yml
#
# Output: docker/wheelhouse/ (inside the build context; git-ignored), with requirements-worker.txt
# (the package's dependencies, from pyproject.toml) and constraints.txt beside the wheels. The wheels
# are downloaded once into a cache (CARDIOSYNTH_CACHE_DIR, default ~/.cache/cardiosynth) keyed by
# target, pins and dependency list, so a second run or a fresh clone copies instead of downloading.
#
# Wheels are chosen for the images' platform (CPython 3.11, manylinux x86-64), not for this host, so
# the folder can be made on any machine that reaches a package index and carried to one that does not.
# TORCH_INDEX_URL: where torch comes from; default the configured index, and for the CPU target, when
# that index gives a CUDA build (as PyPI does on Linux), https://download.pytorch.org/whl/cpu.
set -euo pipefail
cd "$(dirname "$0")/.."

target=cpu
standin=0
out=docker/wheelhouse
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=${2:?--target needs cpu or cuda}; shift 2 ;;
    --s3-standin) standin=1; shift ;;
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "wheelhouse.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$target" in cpu|cuda) ;; *) echo "wheelhouse.sh: --target must be cpu or cuda, not '$target'" >&2; exit 2 ;; esac

python=${PYTHON:-python3}
pip=("$python" -m pip)
# The images' interpreter and platform: wheels for them whatever this host is.
platform=(--only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none
          --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
          --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform linux_x86_64 --platform any)

reqs=$(mktemp)
trap 'rm -f "$reqs"' EXIT
"$python" - pyproject.toml > "$reqs" <<'EOF'
import sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
print("\n".join(deps))
EOF
# The build backend (pyproject's [build-system]) is installed from the wheelhouse too, and moto only
# where the S3 stand-in is asked for. pip evaluates environment markers for this host's Python, not
# the image's: redis needs async-timeout below Python 3.11.3, which Debian bookworm's 3.11.2 is (the
# local base image), so it is added whatever this host runs.
extra=(setuptools wheel "async-timeout>=4.0.3")
# moto's S3 backend and the web server moto_server runs on, not moto[server] (every AWS service's
# dependencies, cfn-lint and docker among them: a third of the wheelhouse and minutes of build).
[ "$standin" = 1 ] && extra+=("moto[s3]" flask flask-cors)

# One download cache per target (CARDIOSYNTH_CACHE_DIR): pip skips a wheel it already holds, so a
# change of pins downloads only what changed, and a second run or a fresh clone downloads nothing.
cache=${CARDIOSYNTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cardiosynth}/wheels-$target
mkdir -p "$cache"
t0=$(date +%s)
torch_pin=$(grep -E '^torch==' "$reqs")
torch_version=${torch_pin#torch==}
is_cuda() { "$python" -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
sys.exit(0 if any(l.startswith("Requires-Dist: nvidia-") for l in z.read(meta).decode().splitlines()) else 1)' "$1"; }
# torch first and alone: which build it is (CPU or CUDA) depends on the index, and the resolver below
# then takes this local wheel (a "+cpu" local version sorts above the plain one) instead of PyPI's.
wheel=$(ls "$cache"/torch-"$torch_version"-*.whl "$cache"/torch-"$torch_version"+*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  torch_index=()
  [ -n "${TORCH_INDEX_URL:-}" ] && torch_index=(--index-url "$TORCH_INDEX_URL")
  "${pip[@]}" download --quiet --no-deps "${platform[@]}" -d "$cache" "${torch_index[@]}" "$torch_pin"
  wheel=$(ls "$cache"/torch-"$torch_version"*.whl | head -n1)
  if [ "$target" = cpu ] && is_cuda "$wheel"; then
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
      echo "wheelhouse.sh: $TORCH_INDEX_URL gave a CUDA build of torch ($(basename "$wheel")) for --target cpu" >&2
      exit 1
    fi
    # PyPI's Linux torch is the CUDA build (gigabytes of nvidia-* wheels): the CPU build lives on
    # PyTorch's own index.
    rm -f "$wheel"
    "${pip[@]}" download --quiet --no-deps "${platform[@]}" -d "$cache" \
      --index-url https://download.pytorch.org/whl/cpu "$torch_pin"
    wheel=$(ls "$cache"/torch-"$torch_version"*.whl | head -n1)
  fi
fi
if [ "$target" = cuda ] && ! is_cuda "$wheel"; then
  echo "wheelhouse.sh: the index gave a CPU build of torch ($(basename "$wheel")) for --target cuda;" \
       "set TORCH_INDEX_URL to an index with the CUDA build" >&2
  exit 1
fi
# The whole set, resolved against the pins: pip names every wheel it saved or already had, and only
# those go into the build context (the cache may hold other versions from earlier pins). The set is
# remembered per input (pins, dependencies, extras), so an unchanged input skips pip altogether.
key=$( { echo "$target $standin $(basename "$wheel")"; cat constraints.txt "$reqs"; printf '%s\n' "${extra[@]}"; } \
  | sha256sum | cut -c1-16)
set_file="$cache/sets/$key"
wheels=()
if [ -f "$set_file" ]; then
  mapfile -t wheels < "$set_file"
  for w in "${wheels[@]}"; do [ -f "$w" ] || { wheels=(); break; }; done
fi
if [ "${#wheels[@]}" = 0 ]; then
  log=$(mktemp)
  trap 'rm -f "$reqs" "$log"' EXIT
  "${pip[@]}" download "${platform[@]}" -d "$cache" --find-links "$cache" -c constraints.txt \
    -r "$reqs" "${extra[@]}" >"$log" 2>&1 || { grep -v 'is ignored' "$log" >&2; exit 1; }
  mapfile -t wheels < <(sed -nE 's/^[[:space:]]*(Saved|File was already downloaded) (.*\.whl)$/\2/p' "$log" | sort -u)
  [ "${#wheels[@]}" -gt 0 ] || { echo "wheelhouse.sh: pip named no wheels (its output changed?)" >&2; exit 1; }
  mkdir -p "$cache/sets"
  printf '%s\n' "${wheels[@]}" > "$set_file"
fi

# Into the build context: hard links where the cache shares the file system, else copies. Stale wheels
# of another target or pin set are removed first, so pip --find-links sees one version of each.
mkdir -p "$out"
find "$out" -mindepth 1 -maxdepth 1 ! -name .gitignore ! -name README.md -exec rm -rf {} +
cp -l "${wheels[@]}" "$out"/ 2>/dev/null || cp "${wheels[@]}" "$out"/
# The lock the images install with: exactly these wheels' versions. Unlike constraints.txt (which also
# pins the test tools), it changes only when a wheel does, so Docker's layer cache survives other pins.
for w in "${wheels[@]}"; do basename "$w"; done \
  | sed -E 's/^([^-]+)-([^-]+)-.*/\1==\2/' | sort > "$out/constraints.txt"
cp "$reqs" "$out/requirements-worker.txt"
echo "$target" > "$out/TARGET"
n=$(ls "$out"/*.whl | wc -l)
echo "wheelhouse: $n wheels, $(du -shL "$out" | cut -f1), torch $(basename "$(ls "$out"/torch-*.whl)")," \
     "target $target, in $(( $(date +%s) - t0 )) s -> $out"
