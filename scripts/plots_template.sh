#!/usr/bin/env bash
# Build .cache/plots_template.html: DVC's plots page with vega, vega-lite and vega-embed inlined, so that
#   dvc plots show --html-template .cache/plots_template.html      (or dvc plots diff ...)
# renders the curves with no network. DVC's own page loads these three from a CDN and shows no curve
# offline. The versions are the ones dvc-render asks the CDN for; npm fetches them once (checking the
# registry's sha512), and nothing is fetched after that.
set -euo pipefail
out=${1:-.cache/plots_template.html}
python=${PYTHON:-python}
versions=$("$python" - <<'PY'
import re
from dvc_render.vega import VegaRenderer
print(" ".join(re.findall(r"npm/(vega(?:-lite|-embed)?@[0-9.]+)", VegaRenderer.SCRIPTS)))
PY
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent $versions >/dev/null)
mkdir -p "$(dirname "$out")"
{
  printf '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n<title>cocoseg plots</title>\n'
  for pkg in $versions; do
    name=${pkg%@*}
    tar xzf "$work/$name-${pkg#*@}.tgz" -C "$work" "package/build/$name.min.js"
    printf '<script type="text/javascript">/* %s, inlined for offline use */\n' "$pkg"
    cat "$work/package/build/$name.min.js"
    printf '\n</script>\n'
  done
  printf '<style>table { border-spacing: 15px; }</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n'
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out: $versions inlined ($(du -k "$out" | cut -f1) KiB)"
