"""Time and size the masks stage against the simple pycocotools loop, on real COCO val2017 images.

Variants, each run in a fresh subprocess, interleaved round by round so machine noise hits all alike
(the fastest of ``--repeat`` runs is reported, all run times are printed):
- baseline: ``COCO(ann_file)``, then per image a zeros (H, W) uint8 canvas, one ``annToMask`` per
  non-crowd annotation painted as ``mask[m > 0] = class_id`` (ids 1..80 by COCO id), crowd pixels
  set to 255, ``cv2.imwrite`` of the semantic PNG; one process.
- stage: ``build_masks(..., MasksConfig(preview=0, workers=W))`` with W=1 and W=0 (all cores); it
  also checks each JPEG, writes an instance PNG per image and an instance table per split, and
  swaps its output folder in atomically.
Timed from the JSON load to the last file written (interpreter start and imports excluded), in wall
time and in CPU time of the process and its workers (which other load on the machine barely moves).
Peak memory: ru_maxrss of the timed process and of its largest worker, and the whole process tree's
RSS summed every 10 ms by the driver with psutil (shared pages count once per process: an upper bound).
All of it runs on the real set and on a set ``--scale`` times larger, made of hard or symbolic links
to the same JPEGs under new names, with the JSON records replicated under new ids. Each set has the
``contents.tsv`` that extract writes beside the images it unpacks (each file's digest, taken while
unzipping), as the stage always finds it in the pipeline: it takes each image's digest for its
manifest from there. ``--no-contents`` leaves the list out, so the stage reads and hashes every image
itself, as it does on a folder that extract did not write.

Outputs go to one temporary folder under ``--work-dir`` (default: the repository, the filesystem
where the stage writes data/masks), each run in its own subfolder, and are deleted only at the
end. Two things on our 2-core test machines (ext4 without a journal) make this matter: creating a
file costs about 0.02 ms of CPU normally, but up to 1 ms for the next 30 s after many files were
deleted nearby (the kernel's ``recently_deleted`` scan), so deleting each run's output would tax
the next run; and /tmp may be a tmpfs elsewhere, where writes cost nothing. Either would misstate
a stage that writes two files per image against a baseline that writes one. The script prints
what creating a file costs before and after the runs; on such a disk, give it a few quiet minutes
(the kernel counts an inode as recent for 60 s, or 5 min while its block is unwritten).

    .venv/bin/python benchmarks/bench_masks.py [--coco-root DIR] [--repeat 5] [--scale 10] [--work-dir DIR]
                                               [--no-contents] [--before OTHER_CHECKOUT/src]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

DEFAULT_ROOT = Path("/work/shared/data/coco2017-val-mini")
REPO = Path(__file__).resolve().parents[1]
SPLIT = "val2017"
VARIANTS = {
    "baseline": "baseline (pycocotools loop)",
    "stage1": "stage workers=1",
    "stage0": "stage workers=0",
}
BEFORE = {"before1": "--before stage workers=1", "before0": "--before stage workers=0"}  # with --before


def run_baseline(coco_root: Path, out_dir: Path) -> None:
    import cv2
    import numpy as np
    from pycocotools.coco import COCO

    coco = COCO(str(coco_root / "annotations" / f"instances_{SPLIT}.json"))
    class_of = {cat_id: k for k, cat_id in enumerate(sorted(coco.getCatIds()), start=1)}
    for img_id in sorted(coco.getImgIds()):
        info = coco.imgs[img_id]
        mask = np.zeros((info["height"], info["width"]), np.uint8)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id], iscrowd=None))
        for ann in anns:
            if not ann["iscrowd"]:
                mask[coco.annToMask(ann) > 0] = class_of[ann["category_id"]]
        for ann in anns:
            if ann["iscrowd"]:
                mask[coco.annToMask(ann) > 0] = 255
        cv2.imwrite(str(out_dir / f"{Path(info['file_name']).stem}.png"), mask)


def run_stage(coco_root: Path, out_dir: Path, workers: int) -> None:
    from cocoseg.core.params import MasksConfig
    from cocoseg.masks.build import build_masks

    build_masks(coco_root, out_dir / "masks", (SPLIT,), MasksConfig(preview=0, workers=workers), seed=42)


def measure(variant: str, coco_root: Path, out: Path) -> dict:
    """Run one variant in this (fresh) process; return its seconds and ru_maxrss peaks in MiB."""
    # imported before the clock starts, so that import time stays out of the timing
    import cv2  # noqa: F401
    import pycocotools.coco  # noqa: F401

    import cocoseg.masks.build  # noqa: F401

    out.mkdir(parents=True)
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    if variant == "baseline":
        run_baseline(coco_root, out)
    else:  # the stage, from this tree or (--before) from the one on PYTHONPATH
        run_stage(coco_root, out, workers=int(variant[-1]))
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    kib = 1 / 1024  # ru_maxrss is in KiB on Linux
    return {
        "seconds": seconds,
        "cpu": cpu,
        "main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib,
        "child": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib,
    }


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (the stage joins its workers)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def spawn(variant: str, coco_root: Path, out: Path, before: Path | None = None) -> dict:
    """Run ``measure`` in a fresh process while summing the RSS of its process tree from out here;
    a ``before`` variant imports cocoseg from the source folder ``before``."""
    cmd = [sys.executable, __file__, "--coco-root", str(coco_root), "--out", str(out), "--child", variant]
    env = dict(os.environ, PYTHONPATH=str(before)) if variant in BEFORE else None
    with tempfile.TemporaryFile("w+") as log:  # the stage's progress bar goes to stderr
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        root, tree, peak, polls = psutil.Process(proc.pid), [], 0, 0
        while proc.poll() is None:
            if polls % 25 == 0:  # listing children scans /proc (~1 ms): refresh it every 0.25 s only
                try:
                    tree = [root, *root.children(recursive=True)]
                except psutil.Error:  # the process just exited
                    pass
            peak = max(peak, sum(_rss(p) for p in tree))
            polls += 1
            time.sleep(0.01)
        stdout = proc.stdout.read()
        if proc.wait():
            log.seek(0)
            sys.exit(f"{variant} failed on {coco_root}:\n{log.read()[-3000:]}")
    return {**json.loads(stdout.splitlines()[-1]), "tree": peak / 2**20}


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:  # a worker that just exited
        return 0


def file_creation_ms(folder: Path, n: int = 300) -> float:
    """CPU milliseconds to create one small file in a new ``folder`` (the files stay until the end)."""
    folder.mkdir(parents=True)
    data = bytes(4096)
    start = time.process_time()
    for i in range(n):
        (folder / f"{i}.png").write_bytes(data)
    return 1000 * (time.process_time() - start) / n


def build_scaled(src: Path, dst: Path, scale: int, contents: bool = True) -> None:
    """Write a COCO folder with every image ``scale`` times (linked, renamed), the JSON to match, and
    (``contents``) the list of files and digests that extract would have written."""
    from cocoseg.core.contents import digest_bytes, format_contents

    data = json.loads((src / "annotations" / f"instances_{SPLIT}.json").read_text())
    image_stride = max(im["id"] for im in data["images"]) + 1
    ann_stride = max(a["id"] for a in data["annotations"]) + 1
    (dst / "annotations").mkdir(parents=True)
    (dst / SPLIT).mkdir()
    images, anns = [], []
    for k in range(scale):
        for im in data["images"]:
            name = f"{Path(im['file_name']).stem}_x{k}.jpg"
            try:
                os.link(src / SPLIT / im["file_name"], dst / SPLIT / name)
            except OSError:  # another filesystem, or protected_hardlinks on a file we do not own
                os.symlink(src / SPLIT / im["file_name"], dst / SPLIT / name)
            images.append({**im, "id": im["id"] + k * image_stride, "file_name": name})
        anns += [
            {**a, "id": a["id"] + k * ann_stride, "image_id": a["image_id"] + k * image_stride}
            for a in data["annotations"]
        ]
    data.update(images=images, annotations=anns)
    (dst / "annotations" / f"instances_{SPLIT}.json").write_text(json.dumps(data))
    if contents:  # written last, as extract does: newer than every file it lists
        files = sorted(p for p in dst.rglob("*") if p.is_file())
        (dst / "contents.tsv").write_text(
            format_contents({p.relative_to(dst).as_posix(): digest_bytes(p.read_bytes()) for p in files})
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coco-root", type=Path, default=DEFAULT_ROOT, help="COCO layout with val2017")
    parser.add_argument("--repeat", type=int, default=5, help="runs per variant; the fastest is shown")
    parser.add_argument("--scale", type=int, default=10, help="larger set = this many copies")
    parser.add_argument("--work-dir", type=Path, default=REPO, help="where outputs and the larger set go")
    parser.add_argument(
        "--no-contents",
        action="store_true",
        help="no contents.tsv beside the images: the stage hashes every image itself",
    )
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)  # internal: one measured run's output
    parser.add_argument(
        "--before",
        type=Path,
        metavar="SRC",
        help="also time the stage as the cocoseg package in this source folder has it (another "
        "checkout's src/), interleaved with the rest: before/after in one run",
    )
    parser.add_argument("--child", choices=[*VARIANTS, *BEFORE], help=argparse.SUPPRESS)  # internal: one run
    args = parser.parse_args()
    if args.repeat < 1 or args.scale < 2:
        parser.error("--repeat must be >= 1 and --scale >= 2")
    ann_file = args.coco_root / "annotations" / f"instances_{SPLIT}.json"
    if not ann_file.is_file() or not (args.coco_root / SPLIT).is_dir():
        sys.exit(
            f"no COCO data at {args.coco_root}: expected {ann_file} and {args.coco_root / SPLIT}/; "
            f"pass --coco-root"
        )
    if args.child:
        print(json.dumps(measure(args.child, args.coco_root, args.out)))
        return

    cores = len(os.sched_getaffinity(0))
    real = json.loads(ann_file.read_text())
    n_images, n_anns = len(real["images"]), len(real["annotations"])
    print(
        f"masks benchmark: {args.coco_root} ({SPLIT}), {n_images} images, {n_anns} annotations, "
        f"{cores} cores, best of {args.repeat} interleaved runs, each in a fresh process; "
        f"outputs under {args.work_dir}; image digests "
        f"{'hashed by the stage (--no-contents)' if args.no_contents else 'from contents.tsv, as extract lists them'}"
    )
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix=".bench_masks.", dir=args.work_dir) as tmp:
        sets = {}
        for scale in (1, args.scale):  # the real set too, linked: the shared copy may be read-only
            build_scaled(args.coco_root, Path(tmp) / f"{scale}x", scale, contents=not args.no_contents)
            sets[f"{scale}x"] = (Path(tmp) / f"{scale}x", n_images * scale)
        creation = [file_creation_ms(Path(tmp) / "probe-before")]
        variants = {**VARIANTS, **(BEFORE if args.before else {})}
        runs: dict[tuple[str, str], list[dict]] = {(s, v): [] for s in sets for v in variants}
        for i in range(args.repeat):
            for set_name, (root, _n) in sets.items():
                for variant in variants:
                    out = Path(tmp) / "runs" / f"{set_name}-{variant}-{i}"
                    runs[set_name, variant].append(spawn(variant, root, out, args.before))
        creation.append(file_creation_ms(Path(tmp) / "probe-after"))

    report(runs, sets, variants, cores, load_before, creation)


def report(
    runs: dict[tuple[str, str], list[dict]],
    sets: dict[str, tuple[Path, int]],
    variants: dict[str, str],
    cores: int,
    load_before: float,
    creation: list[float],
) -> None:
    print(
        f"\n{'set':>4} {'images':>6}  {'variant':<36} {'img/s':>6} {'vs base':>7} {'cpu ms/img':>10}"
        f"  {'runs (s)':<30}  peak MiB: {'main':>4} {'child':>5} {'tree':>5}"
    )
    speed = {
        key: sets[key[0]][1] / min(r["seconds"] for r in results)  # noise only adds time: take the best
        for key, results in runs.items()
    }
    for (set_name, variant), results in runs.items():
        worst = {key: max(r[key] for r in results) for key in ("main", "child", "tree")}
        label = variants[variant] + (f" ({cores} procs)" if variant.endswith("0") else "")
        times = " ".join(f"{r['seconds']:.2f}" for r in results)
        cpu_ms = 1000 * min(r["cpu"] for r in results) / sets[set_name][1]
        print(
            f"{set_name:>4} {sets[set_name][1]:>6}  {label:<36} {speed[set_name, variant]:>6.1f} "
            f"{speed[set_name, variant] / speed[set_name, 'baseline']:>6.2f}x {cpu_ms:>10.1f}  {times:<30}"
            f"  {'':>9} {worst['main']:>4.0f} {worst['child']:>5.0f} {worst['tree']:>5.0f}"
        )
    print(
        f"\nload average (1 min) before the runs: {load_before:.2f} (about 0 on an idle machine; "
        f"more means other processes shared the {cores} cores)"
    )
    print(
        f"creating a file under the work dir: {creation[0]:.3f} ms CPU before the runs, "
        f"{creation[1]:.3f} after "
        f"(about 0.02 on a quiet disk; the stage writes 2 files per image, the baseline 1)"
    )
    print("speed, ratios of images/s (best runs):")
    for set_name in sets:
        s = {v: speed[set_name, v] for v in variants}
        for stage in ("stage", "before") if "before0" in s else ("stage",):
            print(
                f"  {set_name:>4}: {'--before ' if stage == 'before' else ''}stage/baseline "
                f"{s[stage + '0'] / s['baseline']:.2f}x on {cores} cores"
                f" = per image {s[stage + '1'] / s['baseline']:.2f}x (workers=1 vs baseline)"
                f" x parallel {s[stage + '0'] / s[stage + '1']:.2f}x (workers=0 vs workers=1)"
            )
    (small, n_small), (large, n_large) = ((name, n) for name, (_root, n) in sets.items())
    print(f"peak memory in MiB, {n_small} -> {n_large} images (worst run):")
    for variant in variants:
        peaks = {
            key: [max(r[key] for r in runs[name, variant]) for name in (small, large)]
            for key in ("main", "tree")
        }
        print(
            f"  {variants[variant]:<36}"
            + "".join(f"  {key} {a:4.0f} -> {b:4.0f} ({b - a:+3.0f})" for key, (a, b) in peaks.items())
        )
    print(
        "  cpu ms/img: user + system CPU of the process and its workers, per image (least of the runs);\n"
        "  main: ru_maxrss of the timed process; child: largest ru_maxrss among its workers;\n"
        "  tree: RSS summed over the process tree every 10 ms (shared pages counted once per process)"
    )


if __name__ == "__main__":
    main()
