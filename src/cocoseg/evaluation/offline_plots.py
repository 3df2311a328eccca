"""A page template for `dvc plots show` and `dvc plots diff` that renders with no network.

DVC's own page loads vega, vega-lite and vega-embed from a CDN (jsdelivr): offline it shows no curve.
With ``--html-template`` DVC fills this template's ``{plot_divs}`` with the plots (each a Vega-Lite spec,
data inlined, and a ``vegaEmbed(...)`` call; images as files beside the page) and adds no script of its
own, since the template has no ``{scripts}`` placeholder. The three libraries come inlined from
vl-convert-python, which bundles them (no npm, no download): about 900 KB, written once to .cache/.

    dvc plots show --html-template .cache/plots_template.html -o plots     # `cocoseg compare --plots`
    dvc plots diff HEAD my-exp --html-template .cache/plots_template.html -o plots
"""

from __future__ import annotations

from pathlib import Path

from cocoseg.core.files import write_text

TEMPLATE = Path(".cache/plots_template.html")
VEGA_LITE = "5.21"  # DVC's plot templates are Vega-Lite 5 specs: the newest 5.x vl-convert bundles
# Runs inside the bundle, where vegaEmbed, vega and vegaLite are the libraries: DVC's page calls the
# global vegaEmbed(id, spec); this one leaves out the menu entry that opens the online Vega editor.
SNIPPET = """window.vegaEmbed = (el, spec, opts) => vegaEmbed(el, spec,
    {actions: {export: true, source: true, compiled: true, editor: false}, ...(opts || {})});
window.vega = vega;
window.vegaLite = vegaLite;"""
PAGE = """<!DOCTYPE html>
<!-- {stamp} -->
<html>
<head>
<meta charset="utf-8">
<title>cocoseg plots</title>
<script type="text/javascript">
{bundle}
</script>
<style>table {{ border-spacing: 15px; }} body {{ font-family: sans-serif; }}</style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def write_plots_template(path: Path = TEMPLATE) -> Path:
    """Write the template unless ``path`` already holds the one this vl-convert version makes."""
    import vl_convert

    stamp = (
        f"cocoseg offline plots: vega {vl_convert.get_vega_version()}, vega-lite {VEGA_LITE}, "
        f"vega-embed {vl_convert.get_vega_embed_version()}, inlined by vl-convert-python"
    )
    path = Path(path)
    if path.is_file() and stamp in path.read_text(encoding="utf-8")[:500]:
        return path
    bundle = vl_convert.javascript_bundle(SNIPPET, vl_version=VEGA_LITE)
    # Only the placeholder DVC fills may look like one, and the bundle must not end its script tag early.
    for token in ("{plot_divs}", "{scripts}", "{refresh_tag}", "</script"):
        if token in bundle:
            raise RuntimeError(f"the Vega bundle of vl-convert holds {token!r}; it cannot be inlined as is")
    write_text(path, PAGE.format(stamp=stamp, bundle=bundle))
    return path
