"""The README's `dvc exp show` command fits 120 columns for three models, in a real DVC project.

Training is replaced by a stand-in that writes the committed results/ files of each model, scaled by a
factor drawn from its parameters, so the project declares exactly the metrics, params and plots of
dvc.yaml's train and evaluate stages and runs the real compare stage, in seconds.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from helpers import REPO, copy_project, git_commit, run_in

from cocoseg import cli

MODELS = ("unet", "deeplabv3", "fastscnn")
WIDTH = 120

# Stand-in for train@<model> / evaluate@<model>: copy the committed results of that model (metrics scaled).
STAND_IN = '''
import hashlib, json, shutil, sys
from pathlib import Path
import yaml
stage, model, committed = sys.argv[1], sys.argv[2], Path(sys.argv[3])
params = yaml.safe_load(open("params.yaml"))
seed = json.dumps([params["train"], params["models"][model]], sort_keys=True).encode()
factor = 1 - int(hashlib.md5(seed).hexdigest()[:4], 16) / 65536 / 10
scale = lambda v: {k: scale(x) for k, x in v.items()} if isinstance(v, dict) else (
    round(v * factor, 6) if isinstance(v, float) else v)
out = Path("results", stage, model)
shutil.rmtree(out, ignore_errors=True)
shutil.copytree(committed / stage / model, out)
for path in out.glob("*.json"):
    path.write_text(json.dumps(scale(json.loads(path.read_text()))))
if stage == "train":
    Path("models", model).mkdir(parents=True, exist_ok=True)
    Path("models", model, "model.pt").write_text(str(factor))
'''


def readme_exp_show() -> str:
    """The README's one compact `dvc exp show` command (every `dvc exp show` in its bash blocks)."""
    commands = {line.split("  #")[0].strip() for line in (REPO / "README.md").read_text().splitlines()
                if line.strip().startswith("dvc exp show")}
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
    stages["compare"]["deps"] = ["results/evaluate", "results/train"]
    kept = {name: stages[name] for name in ("train", "evaluate", "compare")}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": kept}, sort_keys=False))
    run_in(repo, "git", "init", "-q")
    run_in(repo, "dvc", "init", "-q")
    run_in(repo, "dvc", "config", "core.check_update", "false")


def widest(table: str) -> int:
    return max(len(line.rstrip()) for line in table.splitlines())


@pytest.mark.slow
def test_readme_exp_show_fits_120_columns_for_three_models(tmp_path: Path) -> None:
    command = readme_exp_show()
    assert shlex.split(command) == cli.EXP_SHOW  # `cocoseg compare` runs the same command
    repo = tmp_path / "repo"
    stand_in_project(repo)
    git_commit(repo, "stand-in pipeline")
    run_in(repo, "dvc", "repro")
    git_commit(repo, "baseline")
    run_in(repo, "dvc", "exp", "run", "-n", "unet-r34", "-S", "models.unet.encoder=resnet34")  # the README's
    run_in(repo, "dvc", "exp", "run", "-n", "fastscnn-lr002", "-S", "models.fastscnn.lr=0.02")  # stacks on it

    # Piped, DVC prints the whole table at its natural width (a terminal gets it through a pager).
    table = run_in(repo, *shlex.split(command))
    lines = table.splitlines()
    header = next(line.split() for line in lines if line.strip().startswith("Experiment"))
    assert header[0] == "Experiment" and header[-2:] == ["models.unet.encoder", "models.fastscnn.lr"], table
    assert sorted(header[1:-2]) == sorted(f"miou.{m}" for m in MODELS), table  # unchanged ones too
    assert sum("[unet-r34]" in line or "[fastscnn-lr002]" in line for line in lines) == 2, table
    assert widest(table) <= WIDTH, table
    assert "…" not in run_in(repo, "env", f"COLUMNS={WIDTH}", *shlex.split(command), "--no-pager")
    # Without the flags, each model's metrics columns carry their file paths: far wider.
    assert widest(run_in(repo, "dvc", "exp", "show")) > 5 * WIDTH
