"""How the pipeline's data stages grow with the number of images, fitted and extrapolated to train2017.

For each N of ``--n``, in a fresh DVC project under ``--work-dir``:
1. build an N-image COCO split from the real images of ``--coco-root`` (image i is source image
   i mod 79 with a JPEG comment holding i inserted after its start marker: every file has distinct
   bytes, so DVC hashes and stores N files, as with real COCO; annotations are replicated under new ids);
2. masks: ``stages/masks.py`` (``masks.workers: 0``), wall time and the peak RSS of its main process
   (psutil, every 20 ms) and of the largest worker;
3. ``dvc commit`` of the data (extract's and masks' outputs, with this repository's .dvc/config, so
   ``cache.type`` links); then every other stage (train, evaluate and compare of each model) is
   committed too, with placeholder outputs, so that ``dvc status`` runs twice on the whole pipeline
   with nothing changed (checked: it must say so). The second, warm one is the figure: what a user
   sees each time;
4. evaluate: an untrained Fast-SCNN checkpoint (81 classes, ``--model-size``, default 128) through
   ``stages/evaluate.py`` on the val split (20% of N): its wall time less that of ``--help`` (the same
   imports), and over the Ns the cost of one more val image.
Then a least-squares line ``a + b*N`` per figure over the Ns, and its value at 118,287 images.

With ``--baseline-rev REV``, the status part compares this checkout's pipeline with REV's on the same data
instead: the download stage is kept, its output laid out as subset mode leaves it (manifest, annotation
file and the N images, hard links to data/coco's) where each revision's dvc.yaml puts it; the project's
dvc.yaml, params.yaml, stages/ and src/ are switched between the two ``--repeats`` times, each time every
stage committed again and ``dvc status`` run cold, then warm (the figure: the median warm one of each).

The project is the real one (dvc.yaml, params.yaml, stages/, src/) with the sample's download and
extract stages in place; data/coco is committed as extract's output, so every stage that depends on
data (masks on data/coco/contents.tsv; train and evaluate of each model on data/masks/manifest.tsv) costs what it
costs on real data.

    .venv/bin/python benchmarks/bench_scale.py --n 2000 5000 20000 [--coco-root DIR] [--work-dir DIR]
    .venv/bin/python benchmarks/bench_scale.py --parts masks --n 2000 5000 20000   # masks only
    .venv/bin/python benchmarks/bench_scale.py --parts evaluate --model-size 512 --upsample nearest
    .venv/bin/python benchmarks/bench_scale.py --parts upsample --baseline-rev main  # class maps alone
    .venv/bin/python benchmarks/bench_scale.py --parts status --n 20000 --baseline-rev main  # dvc status, both
    .venv/bin/python benchmarks/bench_scale.py --skip-evaluate   # the same as --parts masks status

Run it on a quiet machine (the load average is printed); each N needs about 0.2 MB per image of disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

import numpy as np
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # this checkout's library, also for the checkpoint written here
TRAIN2017 = 118_287
SPLIT = "val2017"


def build_set(source: Path, n: int, coco: Path) -> None:
    """data/coco/<split>/ with n distinct JPEGs and annotations/instances_<split>.json."""
    src = json.loads((source / "annotations" / f"instances_{SPLIT}.json").read_text())
    by_image: dict[int, list[dict]] = {}
    for ann in src["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    images_src = sorted(src["images"], key=lambda im: im["id"])
    jpegs = {im["id"]: (source / SPLIT / im["file_name"]).read_bytes() for im in images_src}
    (coco / SPLIT).mkdir(parents=True)
    (coco / "annotations").mkdir()
    images, annotations = [], []
    for i in range(n):
        base = images_src[i % len(images_src)]
        name = f"{i + 1:012d}.jpg"
        comment = f"cocoseg bench copy {i}".encode()
        data = jpegs[base["id"]]
        # A COM segment (FF FE, 2-byte length) right after SOI: valid JPEG, unique bytes, same pixels.
        (coco / SPLIT / name).write_bytes(
            data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]
        )
        images.append({**base, "id": i + 1, "file_name": name})
        for ann in by_image.get(base["id"], []):
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": i + 1})
    coco_json = {**src, "images": images, "annotations": annotations}
    (coco / "annotations" / f"instances_{SPLIT}.json").write_text(json.dumps(coco_json))
    write_contents(coco)


def write_contents(coco: Path) -> None:
    """data/coco/contents.tsv as extract writes it (what the masks stage depends on)."""
    from cocoseg.core.contents import digest_bytes, format_contents
    from cocoseg.core.layout import COCO_CONTENTS

    files = sorted(p.relative_to(coco).as_posix() for p in coco.rglob("*") if p.is_file())
    (coco / COCO_CONTENTS).write_text(
        format_contents({name: digest_bytes((coco / name).read_bytes()) for name in files})
    )


def sh(cwd: Path, *args: str, expect: str = "") -> float:
    """Run a command in ``cwd`` (the venv's bin first on PATH); return its wall time in seconds. Its
    output must hold ``expect``."""
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "DVC_NO_ANALYTICS": "1",
        "PYTHONPATH": str(REPO / "src"),
    }
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0 or expect not in result.stdout + result.stderr:
        raise SystemExit(
            f"{' '.join(args)} failed in {cwd} (or its output lacks {expect!r}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return time.perf_counter() - start


def run_masks(project: Path) -> dict[str, float]:
    """The masks stage; wall time and peak RSS (MiB) of its main process and of its largest worker."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    start = time.perf_counter()
    process = psutil.Popen(
        [sys.executable, "stages/masks.py"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    main_peak = worker_peak = 0
    while process.poll() is None:
        try:
            main_peak = max(main_peak, process.memory_info().rss)
            for child in process.children():
                worker_peak = max(worker_peak, child.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.02)
    if process.returncode != 0:
        raise SystemExit(f"masks stage failed in {project}")
    wall = time.perf_counter() - start
    return {
        "masks_s": wall,
        "masks_main_rss_mib": main_peak / 2**20,
        "masks_worker_rss_mib": worker_peak / 2**20,
    }


def make_project(root: Path, upsample: str = "exact") -> Path:
    project = root / "project"
    project.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "stages", project / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # data/coco comes from build_set, not from download + extract: extract keeps its outs, loses its dep
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text())
    del pipeline["stages"]["download"]
    pipeline["stages"]["extract"]["deps"].remove("data/raw")
    (project / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["masks"]["preview"] = 0
    if upsample != "exact":  # left out otherwise: a revision before the key would refuse it
        params["evaluate"]["upsample"] = upsample
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(project, "git", "init", "-q")
    sh(project, "dvc", "init", "-q")
    shutil.copy(REPO / ".dvc" / "config", project / ".dvc" / "config")
    sh(project, "dvc", "config", "core.check_update", "false")
    return project


def write_placeholder_outputs(project: Path) -> list[str]:
    """Put a placeholder at every output of the stages after masks (train, evaluate, compare: a file
    where the path has a suffix, else a folder holding one), so they can be committed as if run;
    return those stages' names."""
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    models = yaml.safe_load((project / "params.yaml").read_text())["models"]
    names = []
    for name, stage in pipeline.items():
        if name in ("download", "import", "extract", "masks"):
            continue
        keys = list(models) if "foreach" in stage else [None]
        for key in keys:
            body = stage["do"] if key else stage
            names.append(f"{name}@{key}" if key else name)
            for entry in (e for section in ("outs", "metrics", "plots") for e in body.get(section, [])):
                path = project / str(next(iter(entry)) if isinstance(entry, dict) else entry).replace(
                    "${key}", str(key)
                )
                target = path if path.suffix else path / "placeholder"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("{}\n")
    return names


def write_untrained_model(project: Path, size: int) -> None:
    import torch

    from cocoseg.core.splits import load_labels
    from cocoseg.models import build_model, model_spec
    from cocoseg.models.checkpoint import save_checkpoint
    from cocoseg.models.preprocessing import Preprocessing

    classes = load_labels(project / "data" / "masks")
    torch.manual_seed(0)
    model = build_model("fastscnn", len(classes))
    save_checkpoint(
        project / "models" / "fastscnn" / "model.pt",
        model.state_dict(),
        model_spec("fastscnn", len(classes), "resnet18"),
        Preprocessing((size, size)).to_json(),
        classes,
        {},
    )


def measure(
    n: int,
    source: Path,
    work: Path,
    parts: set[str],
    upsample: str,
    size: int,
    baseline: str | None = None,
    repeats: int = 2,
) -> dict[str, float]:
    root = work / f"n{n}"
    shutil.rmtree(root, ignore_errors=True)
    project = make_project(root, upsample)
    build_set(source, n, project / "data" / "coco")
    figures: dict[str, float] = {"n": n, **run_masks(project)}
    if "status" in parts and baseline:
        figures.update(compare_status(project, baseline, repeats, upsample))
    elif "status" in parts:
        figures["commit_s"] = sh(project, "dvc", "commit", "-f", "-q", "extract", "masks")
        sh(project, "dvc", "commit", "-f", "-q", *write_placeholder_outputs(project))
        up_to_date = "Data and pipelines are up to date."
        sh(project, "dvc", "status", expect=up_to_date)  # cold: builds DVC's hash state database
        figures["status_s"] = sh(project, "dvc", "status", expect=up_to_date)
    if "evaluate" in parts:
        write_untrained_model(project, size)
        startup = sh(project, sys.executable, "stages/evaluate.py", "--help")  # interpreter and imports
        seconds = sh(project, sys.executable, "stages/evaluate.py", "--model", "fastscnn")
        figures["evaluate_s"] = seconds - startup
        split = json.loads((project / "data" / "masks" / "split.json").read_text())
        figures["val_images"] = len(split["val"])
    return figures


def install_pipeline(project: Path, rev: str | None, upsample: str) -> list[str]:
    """Put ``rev``'s dvc.yaml, params.yaml, stages/ and src/ (None: this checkout's) into ``project``, download
    stage kept, and lay out its output as subset mode leaves it; return every stage's name, to commit."""
    for name in ("dvc.yaml", "params.yaml"):
        (project / name).unlink(missing_ok=True)
    for name in ("stages", "src"):
        shutil.rmtree(project / name, ignore_errors=True)
    if rev is None:
        for name in ("dvc.yaml", "params.yaml"):
            shutil.copy(REPO / name, project / name)
        for name in ("stages", "src"):
            shutil.copytree(
                REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
    else:
        archive = subprocess.run(
            ["git", "archive", rev, "dvc.yaml", "params.yaml", "stages", "src"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(project)], input=archive, check=True)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["masks"]["preview"] = 0
    if upsample != "exact":
        params["evaluate"]["upsample"] = upsample
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    raw = project / str(pipeline["download"]["outs"][0])
    shutil.rmtree(project / "data" / "raw", ignore_errors=True)
    coco = project / "data" / "coco"
    for path in sorted(p for p in coco.rglob("*") if p.is_file() and p.name != "contents.tsv"):
        (raw / path.relative_to(coco)).parent.mkdir(parents=True, exist_ok=True)
        os.link(path, raw / path.relative_to(coco))
    (raw / "manifest.json").write_text(
        json.dumps({"source": "coco2017-subset", "archives": [], "folders": ["annotations", SPLIT]})
    )
    return ["download", "extract", "masks", *write_placeholder_outputs(project)]


def compare_status(project: Path, rev: str, repeats: int, upsample: str) -> dict[str, float]:
    """Warm ``dvc status`` of this checkout's pipeline and of ``rev``'s on the same data, alternated."""
    up_to_date = "Data and pipelines are up to date."
    times: dict[str, list[float]] = {"status_s": [], "status_base_s": []}
    for _ in range(repeats):
        for key, revision in (("status_s", None), ("status_base_s", rev)):
            stages = install_pipeline(project, revision, upsample)
            (project / "dvc.lock").unlink(missing_ok=True)
            sh(project, "dvc", "commit", "-f", "-q", *stages)
            sh(project, "dvc", "status", expect=up_to_date)  # cold: the new paths' hash state
            times[key].append(sh(project, "dvc", "status", expect=up_to_date))
            print(f"  {key}: {times[key][-1]:.2f} s (load {os.getloadavg()[0]:.2f})", flush=True)
    return {key: float(np.median(values)) for key, values in times.items()}


def smooth_logits(classes: int, field: int, size: int, seed: int = 0) -> torch.Tensor:
    """(K, size, size) logits as a segmentation head gives them: a (K, field, field) random field,
    bilinearly upsampled (Fast-SCNN's head works at 1/8 of the input: field = size / 8)."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    coarse = 3 * torch.randn(1, classes, field, field, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0].contiguous()


def load_inference(rev: str | None) -> dict[str, object]:
    """The class-map functions to time: this checkout's, torch's reference and, with ``rev``, that
    revision's ``upsampled_argmax`` (run from its source, in this process)."""
    import torch.nn.functional as F

    from cocoseg.models import inference

    def reference(logits, size):  # upsample all K maps, then the argmax
        return F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0].argmax(0)

    functions = {"reference": reference, **inference.UPSAMPLING}
    if rev:
        source = subprocess.run(
            ["git", "show", f"{rev}:src/cocoseg/models/inference.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        old = types.ModuleType("old_inference")
        sys.modules[old.__name__] = old  # its dataclasses look their module up
        exec(compile(source, f"{rev}:inference.py", "exec"), old.__dict__)  # noqa: S102 - our own file at rev
        functions[f"{rev} exact"] = old.upsampled_argmax
    return functions


def bench_upsampling(
    classes: int,
    size: int,
    out: tuple[int, int],
    fields: list[int],
    threads: int,
    repeats: int,
    rev: str | None,
) -> None:
    """Milliseconds per image of each class-map function (median of ``repeats``), same inputs, one
    process; and how many pixels ``nearest`` labels differently from the exact argmax."""
    import torch

    torch.set_num_threads(threads)
    functions = load_inference(rev)
    print(
        f"\nclass maps: {classes} classes, {size}x{size} logits -> {out[0]}x{out[1]}, {threads} thread(s), "
        f"median of {repeats}, load {os.getloadavg()[0]:.2f}"
    )
    for field in fields:
        logits = smooth_logits(classes, field, size)
        exact = functions["exact"](logits, out)
        times = {}
        for name, function in functions.items():
            function(logits, out)  # warm-up
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                result = function(logits, out)
                runs.append(time.perf_counter() - start)
            times[name] = 1000 * float(np.median(runs))
            if name != "nearest":
                assert torch.equal(result, exact), f"{name} differs from exact"
        differ = float((functions["nearest"](logits, out) != exact).float().mean())
        print(
            f"field {field}x{field}: "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in times.items())
            + f"; nearest differs from exact on {100 * differ:.2f}% of pixels",
            flush=True,
        )


def fit(rows: list[dict[str, float]], key: str) -> float:
    """Least-squares a + b*N over the rows, at train2017's size (a constant for one N)."""
    ns = np.array([r["n"] for r in rows], float)
    ys = np.array([r[key] for r in rows], float)
    if len(rows) == 1:
        return float(ys[0] / ns[0] * TRAIN2017) if key.endswith("_s") else float(ys[0])
    b, a = np.polyfit(ns, ys, 1)
    return float(a + b * TRAIN2017)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="*", default=[2000, 5000])
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["masks", "status", "evaluate", "upsample"],
        default=["masks", "status", "evaluate"],
        help="masks always runs for a stage part; upsample times the class maps alone",
    )
    parser.add_argument(
        "--coco-root", type=Path, default=REPO.parent / "shared" / "data" / "coco2017-val-mini"
    )
    parser.add_argument("--work-dir", type=Path, default=REPO / ".bench_scale")
    parser.add_argument("--keep", action="store_true", help="keep each N's project (default: delete it)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the upsample part")
    parser.add_argument(
        "--fields",
        type=int,
        nargs="+",
        default=[64, 8],
        help="upsample part: sizes of the random fields the logits are upsampled from",
    )
    parser.add_argument(
        "--upsample",
        choices=["exact", "nearest"],
        default="exact",
        help="evaluate part: the project's evaluate.upsample",
    )
    parser.add_argument("--model-size", type=int, default=128, help="evaluate part: the model's input size")
    parser.add_argument(
        "--baseline-rev",
        help="upsample part: also time this git revision's exact method; "
        "status part: also time this revision's pipeline on the same data (see above)",
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="status part with --baseline-rev: alternations"
    )
    parser.add_argument("--skip-evaluate", action="store_true", help="the parts masks and status only")
    args = parser.parse_args()
    if args.skip_evaluate:
        args.parts = [part for part in args.parts if part != "evaluate"]
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    if "upsample" in args.parts:
        bench_upsampling(81, 512, (480, 640), args.fields, args.threads, 9, args.baseline_rev)
    if set(args.parts) - {"upsample"} and args.n:
        report_stages(args)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


def report_stages(args: argparse.Namespace) -> None:
    rows = []
    for n in args.n:
        rows.append(
            measure(
                n,
                args.coco_root,
                args.work_dir,
                set(args.parts),
                args.upsample,
                args.model_size,
                args.baseline_rev,
                args.repeats,
            )
        )
        print(
            json.dumps({k: round(v, 3) for k, v in rows[-1].items()}),
            f"load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        if not args.keep:
            shutil.rmtree(args.work_dir / f"n{n}", ignore_errors=True)
    keys = [
        "masks_s",
        "masks_main_rss_mib",
        "masks_worker_rss_mib",
        "commit_s",
        "status_s",
        "status_base_s",
        "evaluate_s",
    ]
    keys = [key for key in keys if key in rows[0]]
    header = " | ".join(f"N={r['n']}" for r in rows)
    print(f"\n| figure | {header} | fit at {TRAIN2017} |")
    print(f"|---|{'---|' * len(rows)}---|")
    for key in keys:
        print(f"| {key} | {' | '.join(f'{r[key]:.2f}' for r in rows)} | {fit(rows, key):.1f} |")
    # what one more val image costs, fixed costs (plots, overlays, timing passes) aside
    if len(rows) > 1 and "evaluate_s" in rows[0]:
        slope = np.polyfit([r["val_images"] for r in rows], [r["evaluate_s"] for r in rows], 1)[0]
        print(f"\nevaluate: {1000 * slope:.1f} ms per additional val image")


if __name__ == "__main__":
    main()
