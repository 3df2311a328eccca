"""A team's DVC set-up on a shrunken pipeline: a clone + `dvc pull` from an S3 server on 127.0.0.1
reproduces with nothing rerun, the run-cache travels through it, and queued experiments run in
parallel without downloading or rebuilding masks."""

from __future__ import annotations

import csv
import io
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import psutil
import pytest
import yaml
from helpers import git_commit, one_model_project, ran, run_in

pytestmark = pytest.mark.slow

STAGES = {"check", "download", "extract", "masks", "train@fastscnn", "evaluate@fastscnn", "compare"}
BUCKET = "cocoseg-team"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pipeline with one small model, the repository's own .dvc/config, reproduced and committed."""
    repo = tmp_path_factory.mktemp("team") / "repo"
    one_model_project(repo, preview=1)
    assert ran(run_in(repo, "dvc", "repro")) == STAGES
    git_commit(repo, "baseline")
    return repo


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1, with an empty bucket; dvc reaches it via dvc-s3."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    moto_server = str(Path(sys.executable).parent / "moto_server")
    server = subprocess.Popen(
        [moto_server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials for the fake server only; never a real profile or endpoint."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(key, raising=False)


def clone(origin: Path, dest: Path) -> Path:
    run_in(origin.parent, "git", "clone", "-q", str(origin), str(dest))
    run_in(dest, "dvc", "config", "--local", "core.check_update", "false")
    return dest


def test_clone_and_pull_from_s3_reproduces_with_nothing_rerun(
    project: Path, s3_endpoint: str, aws_env: None, tmp_path: Path
) -> None:
    run_in(project, "dvc", "remote", "add", "-d", "team", f"s3://{BUCKET}/dvc")
    run_in(project, "dvc", "remote", "modify", "team", "endpointurl", s3_endpoint)
    git_commit(project, "team remote")
    run_in(project, "dvc", "push", "--run-cache")

    # A new machine: clone + pull restores everything, download and extract included; repro reruns nothing.
    first = clone(project, tmp_path / "first")
    run_in(first, "dvc", "pull")
    for path in (
        "data/raw/download/val2017.zip",
        "data/coco/annotations/instances_val2017.json",
        "models/fastscnn/model.pt",
    ):
        assert (first / path).read_bytes() == (project / path).read_bytes(), path
    assert (
        first / "data/raw/download/val2017.zip"
    ).stat().st_nlink == 2  # linked to the cache, not a second copy
    output = run_in(first, "dvc", "repro")
    assert ran(output) == set(), output
    assert "Data and pipelines are up to date." in output

    # The run-cache travels too: what one machine ran with other params, another restores without running.
    # (`dvc repro` consults it; dvc 3.67's `dvc exp run` in the workspace reruns the stage instead.)
    set_preview(first, 2)
    assert ran(run_in(first, "dvc", "repro")) == {"check", "masks"}  # check: any parameter change
    run_in(first, "dvc", "push", "--run-cache")
    second = clone(project, tmp_path / "second")
    run_in(second, "dvc", "pull", "--run-cache")
    set_preview(second, 2)
    output = run_in(second, "dvc", "repro", "--pull")  # --pull: fetch a restored stage's outputs
    assert ran(output) == {"check"}, output  # a second of checking: persist, so never from the run-cache
    assert "Stage 'masks' is cached - skipping run, checking out outputs" in output
    assert (second / "dvc.lock").read_text() == (first / "dvc.lock").read_text()


def set_preview(repo: Path, count: int) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["masks"]["preview"] = count
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def queue_states(repo: Path) -> dict[str, str]:
    """Experiment name -> Queued | Running | Success | Failed, from `dvc queue status`."""
    states = {}
    for line in run_in(repo, "dvc", "queue", "status").splitlines():
        words = line.split()
        if len(words) >= 3 and words[-1] in ("Queued", "Running", "Success", "Failed"):
            states[words[1]] = words[-1]
    return states


def stages_running_in_queue(repo: Path) -> set[str]:
    """The queued-experiment workspaces (``repo``/.dvc/tmp/exps/*) in which a stage script runs now."""
    workspaces = set()
    for process in psutil.process_iter(["cmdline", "cwd"]):
        cmdline, cwd = process.info["cmdline"] or [], process.info["cwd"] or ""
        in_queue = cwd.startswith(str(repo / ".dvc" / "tmp" / "exps"))
        if in_queue and any(arg.startswith("stages/") for arg in cmdline):
            workspaces.add(cwd)
    return workspaces


def test_two_queued_experiments_run_in_parallel_without_download_or_masks(project: Path) -> None:
    names = {"lr-high": "0.02", "lr-low": "0.005"}
    for name, lr in names.items():
        run_in(project, "dvc", "exp", "run", "--queue", "-n", name, "-S", f"models.fastscnn.lr={lr}")
    most_at_once, done = 0, threading.Event()

    def watch() -> None:  # every 0.1 s: `dvc queue status` takes seconds, a stage of the tiny model not many
        nonlocal most_at_once
        while not done.is_set():
            most_at_once = max(most_at_once, len(stages_running_in_queue(project)))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    run_in(project, "dvc", "queue", "start", "-j", "2")
    states, deadline = {}, time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            states = queue_states(project)
            if set(names) <= set(states) and all(states[n] in ("Success", "Failed") for n in names):
                break
            time.sleep(1)
    finally:
        done.set()
        watcher.join()
        subprocess.run(
            [str(Path(sys.executable).parent / "dvc"), "queue", "stop"],
            cwd=project,
            capture_output=True,
            timeout=60,
        )
    assert {states.get(n) for n in names} == {"Success"}, states
    assert most_at_once == 2  # stages of both experiments ran at the same time, each in its own workspace

    for name in names:
        log = run_in(project, "dvc", "queue", "logs", name)
        # only what the new lr changes: no download, extract or masks
        assert ran(log) == {"check", "train@fastscnn", "evaluate@fastscnn", "compare"}, log
    table = list(csv.DictReader(io.StringIO(run_in(project, "dvc", "exp", "show", "--csv"))))
    lr = next(column for column in table[0] if column.endswith("models.fastscnn.lr"))
    assert {row["Experiment"]: row[lr] for row in table if row["Experiment"]} == names
