"""What compares experiments, in a real DVC project: the README's `dvc exp show` command fits 120 columns for
three models on two class sets, and the plots pages (`cocoseg compare --plots [REV ...]`) load nothing from
the network, on a machine without npm.

Training is replaced by a stand-in that copies the committed results/ files of each model, and evaluation by
one that scores a confusion matrix drawn from its parameters with evaluate's own writers (metrics.json,
per_class.json): on the sample's 4 classes, or on COCO-like VOC names where each model scores its own subset
of the classes, as on real COCO. So the project declares exactly the metrics, params and plots of dvc.yaml's
train and evaluate stages and runs the real compare stage, in seconds.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import vl_convert
import yaml
from helpers import REPO, copy_project, git_commit, run_in

from cocoseg import cli
from cocoseg.core.layout import VOC_CATEGORIES
from cocoseg.evaluation.offline_plots import SNIPPET, VEGA_LITE, write_plots_template

pytestmark = pytest.mark.slow

MODELS = ("unet", "deeplabv3", "fastscnn")
WIDTH = 120

# Stand-in for train@<model> / evaluate@<model>: the committed results of that model; evaluate's scores from a
# confusion matrix seeded by the parameters, over the class set of data.source, written by evaluate's writers.
STAND_IN = f"""
import hashlib, json, shutil, sys
from pathlib import Path
import numpy as np, yaml
from cocoseg.core.files import write_json
from cocoseg.evaluation.metrics import per_class_scores, summarise
stage, model, committed = sys.argv[1], sys.argv[2], Path(sys.argv[3])
params = yaml.safe_load(open("params.yaml"))
source = params["data"]["source"]
seed = json.dumps([source, params["train"], params["models"][model], model], sort_keys=True)
rng = np.random.default_rng(int(hashlib.md5(seed.encode()).hexdigest()[:8], 16))
out = Path("results", stage, model)
shutil.rmtree(out, ignore_errors=True)
shutil.copytree(committed / stage / model, out)
if stage == "train":
    Path("models", model).mkdir(parents=True, exist_ok=True)
    Path("models", model, "model.pt").write_text(seed)
else:
    classes = ["background", *({list(VOC_CATEGORIES)!r} if source == "coco2017" else ["disk", "square", "triangle"])]
    seen = [0, *sorted(rng.choice(np.arange(1, len(classes)), (len(classes) - 1) * 2 // 3 + 1, replace=False))]
    cm = np.zeros((len(classes), len(classes)), np.int64)
    for k in seen:
        cm[k, k] = rng.integers(100, 1000)
        cm[k, rng.choice(seen)] += rng.integers(0, 100)
    write_json(out / "metrics.json", {{**summarise(cm), "params": 1000 + len(model), "val_images": 12}})
    write_json(out / "per_class.json", per_class_scores(cm, classes))
"""


def readme_exp_show() -> str:
    """The README's one compact `dvc exp show` command (every `dvc exp show` in its bash blocks)."""
    commands = {
        line.split("  #")[0].strip()
        for line in (REPO / "README.md").read_text().splitlines()
        if line.strip().startswith("dvc exp show")
    }
    assert len(commands) == 1, commands
    return commands.pop()


def stand_in_project(repo: Path) -> None:
    """dvc.yaml's train, evaluate and compare stages with their declarations; train and evaluate stand in."""
    copy_project(repo)
    (repo / "stand_in.py").write_text(STAND_IN)
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    for name in ("train", "evaluate"):
        stages[name]["do"]["cmd"] = f"python stand_in.py {name} ${{key}} {REPO / 'results'}"
        stages[name]["do"]["deps"] = ["stand_in.py", *(["models/${key}"] if name == "evaluate" else [])]
    stages["train"]["do"]["params"].append("data.source")  # the class set: another dataset retrains
    stages["compare"]["deps"] = ["results/evaluate", "results/train"]
    kept = {name: stages[name] for name in ("train", "evaluate", "compare")}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": kept}, sort_keys=False))
    run_in(repo, "git", "init", "-q")
    run_in(repo, "dvc", "init", "-q")
    run_in(repo, "dvc", "config", "core.check_update", "false")
    shutil.copytree(REPO / ".dvc" / "plots", repo / ".dvc" / "plots")  # the all-models plot's template


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Baseline on the sample's classes, the README's unet experiment, then one on a COCO-like class set."""
    repo = tmp_path_factory.mktemp("exp_show") / "repo"
    stand_in_project(repo)
    git_commit(repo, "stand-in pipeline")
    run_in(repo, "dvc", "repro")
    git_commit(repo, "baseline")
    run_in(repo, "dvc", "exp", "run", "-n", "unet-r34", "-S", "models.unet.encoder=resnet34")  # the README's
    run_in(repo, "dvc", "exp", "run", "-n", "coco", "-S", "data.source=coco2017")  # stacks on it
    return repo


def widest(table: str) -> int:
    return max(len(line.rstrip()) for line in table.splitlines())


def test_readme_exp_show_fits_120_columns_on_two_class_sets(project: Path) -> None:
    command = readme_exp_show()
    assert shlex.split(command) == cli.EXP_SHOW  # `cocoseg compare` runs the same command
    per_class = json.loads((project / "results" / "evaluate" / "unet" / "per_class.json").read_text())
    assert len(per_class) > 10 and "person" in {r["class"] for r in per_class}  # the COCO-like set is applied
    # Piped, DVC prints the whole table at its natural width (a terminal gets it through a pager).
    table = run_in(project, *shlex.split(command))
    lines = table.splitlines()
    header = next(line.split() for line in lines if line.strip().startswith("Experiment"))
    assert header[0] == "Experiment" and sorted(header[-2:]) == ["data.source", "models.unet.encoder"], table
    assert sorted(header[1:-2]) == sorted(f"miou.{m}" for m in MODELS), (
        table
    )  # every model, unchanged ones too
    assert sum("[unet-r34]" in line or "[coco]" in line for line in lines) == 2, table
    assert widest(table) <= WIDTH, table
    assert "…" not in run_in(project, "env", f"COLUMNS={WIDTH}", *shlex.split(command), "--no-pager")
    # No class name became a column: per-class scores live in per_class.json, a plot.
    assert "per_class" not in run_in(project, "dvc", "exp", "show", "--csv")
    # Without the flags, each model's metrics columns carry their file paths: far wider.
    assert widest(run_in(project, "dvc", "exp", "show")) > 5 * WIDTH


def without_npm(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH holds the venv and git, and no npm."""
    tools = tmp_path / "bin"
    tools.mkdir()
    os.symlink(shutil.which("git"), tools / "git")
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), str(tools)]),
        "DVC_NO_ANALYTICS": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }
    assert shutil.which("npm", path=env["PATH"]) is None
    return env


def offline_page(page: Path) -> list[dict]:
    """Check a plots page loads nothing from the network; return the Vega-Lite specs it embeds.

    "http" may appear only inside the inlined library (the SVG namespace, its error messages) and as each
    spec's ``$schema``, names that nothing fetches; no src, href, import or CSS url names a remote file.
    """
    html = page.read_text(encoding="utf-8")
    bundle = vl_convert.javascript_bundle(SNIPPET, vl_version=VEGA_LITE)
    assert html.count(bundle) == 1  # the libraries, inlined whole
    rest = html.replace(bundle, "")
    assert not re.search(r"<script[^>]*\bsrc=|<link\b|@import|url\(", rest, re.IGNORECASE)
    specs = [json.loads(m) for m in re.findall(r"var spec = (\{.*?\});\s*vegaEmbed", rest, re.DOTALL)]
    assert specs
    for spec in specs:
        rest = rest.replace(spec["$schema"], "")
    assert "http" not in rest
    sources = re.findall(r'<img src="([^"]+)"', rest)
    assert sources and all((page.parent / s).is_file() for s in sources)  # images: files beside the page
    return specs


def test_plots_pages_render_with_no_network_and_no_npm(project: Path, tmp_path: Path) -> None:
    env = without_npm(tmp_path)
    cocoseg = [sys.executable, "-m", "cocoseg", "compare", "--plots"]
    for revisions in ([], ["HEAD", "coco"]):
        shutil.rmtree(project / "plots", ignore_errors=True)
        result = subprocess.run(
            [*cocoseg, *revisions],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        verb = "diff" if revisions else "show"
        assert result.stdout.startswith(f"$ dvc plots {verb} {' '.join(revisions)}".replace("  ", " "))
        specs = offline_page(project / "plots" / "index.html")
        titles = {json.dumps(spec.get("title")) for spec in specs}
        assert any("every model" in t for t in titles) and any("per class" in t for t in titles), titles
        for spec in specs:  # each renders with the inlined Vega-Lite version, with no network
            svg = vl_convert.vegalite_to_svg(spec, vl_version=VEGA_LITE)
            assert "<path" in svg or "<rect" in svg
        if revisions:  # both revisions in the diff's data
            revs = {row.get("rev") for spec in specs for row in spec["data"]["values"]}
            assert {"HEAD", "coco"} <= revs, revs
    template = project / cli.PLOTS_TEMPLATE
    stamp = template.read_text()[:200]
    assert write_plots_template(template) == template and template.read_text()[:200] == stamp  # made once
