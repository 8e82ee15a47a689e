#!/usr/bin/env bash
# Rebuild offline.html: DVC's HTML page for `dvc plots show` with the Vega libraries inlined, so
# the plots render without a network (DVC's own page loads them from a CDN). The versions are the
# ones dvc-render's page asks for. Needs npm (the npm registry). Run from anywhere.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
packages=(vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2)
npm pack --silent "${packages[@]}" >/dev/null
{
  echo '<!DOCTYPE html>'
  echo '<html>'
  echo '<head>'
  echo '    {refresh_tag}'
  echo '    <meta charset="utf-8">'
  echo '    <title>DVC Plot</title>'
  echo "    <!-- ${packages[*]} from the npm registry, inlined (BSD-3-Clause: .dvc/plots/licenses/) -->"
  for spec in "${packages[@]}"; do
    name="${spec%@*}"
    mkdir -p "$name"
    tar xzf "$name-${spec#*@}.tgz" -C "$name"
    cp "$name/package/LICENSE" "$here/licenses/$name.LICENSE"
    echo "    <script>"
    cat "$name/package/build/$name.min.js"
    echo
    echo "    </script>"
  done
  echo '    <style>'
  echo '        table { border-spacing: 15px; }'
  echo '    </style>'
  echo '</head>'
  echo '<body>'
  echo '    {plot_divs}'
  echo '</body>'
  echo '</html>'
} > "$here/offline.html"
echo "wrote $here/offline.html"
