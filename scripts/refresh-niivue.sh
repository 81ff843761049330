#!/usr/bin/env bash
# Refreshes the NiiVue bundle that the gateway's web page (/ui) serves, from the npm registry.
#
#   bash scripts/refresh-niivue.sh            # the version in vendor/niivue/VERSION, fetched again
#   bash scripts/refresh-niivue.sh 0.70.0     # another pinned version
#
# The page loads NiiVue from the package's static files, never from a CDN (the page must work on an
# air-gapped network), so the built UMD bundle is vendored as published (`dist/niivue.umd.js`), with
# NiiVue's BSD-2-Clause licence and the licences of the dependencies the bundle contains. Needs npm.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=services/cardiosynth/gateway/static/ui/vendor/niivue
version=${1:-$(cat "$dest/VERSION")}
if ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  echo "refresh-niivue: want an exact version like 0.69.0, got '$version'" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  npm init -y >/dev/null
  # --ignore-scripts: nothing from the registry runs here; the bundle is used as published.
  npm install --no-audit --no-fund --ignore-scripts --omit=dev --omit=optional --save-exact "@niivue/niivue@$version" >/dev/null
)
pkg="$work/node_modules/@niivue/niivue"
licence=$(node -p "require('$pkg/package.json').license")
if [ "$licence" != "BSD-2-Clause" ]; then
  echo "refresh-niivue: @niivue/niivue $version is licensed '$licence', not BSD-2-Clause: check before vendoring" >&2
  exit 1
fi

cp "$pkg/dist/niivue.umd.js" "$dest/niivue.umd.js"
echo "$version" >"$dest/VERSION"
# The npm package carries no LICENSE file; LICENSE here is NiiVue's repository licence (BSD-2-Clause,
# "Copyright (c) 2021, Niivue"), kept as is. The bundle also contains NiiVue's runtime dependencies:
# their licence texts as npm installed them.
{
  echo "Licences of the packages bundled into niivue.umd.js (@niivue/niivue $version and its dependencies)."
  (cd "$work" && npm ls --omit=dev --omit=optional --all --parseable) | tail -n +2 | sort -u | while read -r dir; do
    name=$(node -p "require('$dir/package.json').name + '@' + require('$dir/package.json').version + ' (' + require('$dir/package.json').license + ')'")
    echo
    echo "==== $name"
    found=$(find "$dir" -maxdepth 1 -iname 'licen[cs]e*' -o -maxdepth 1 -iname 'copying*' | head -n 1)
    if [ -n "$found" ]; then cat "$found"; else echo "(no licence file in the npm package; for @niivue/niivue see LICENSE beside this file)"; fi
  done
} >"$dest/THIRD-PARTY-LICENSES"
bytes=$(wc -c <"$dest/niivue.umd.js")
echo "vendored @niivue/niivue $version: $dest/niivue.umd.js ($bytes bytes)"
