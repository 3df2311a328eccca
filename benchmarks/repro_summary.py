"""What one ``dvc repro`` of the pipeline showed, from its log and the files it wrote (gpu_check.sh, part 1).

- each stage's wall time, from the log's time stamps (``HH:MM:SS`` before every line, as gpu_check.sh
  writes them) between one ``Running stage`` line and the next;
- the warn-only kernels: every ``<kernel> does not have a deterministic implementation`` warning by
  kernel name, with the number of times it was printed (once per stage process that ran it);
- per model: best val mIoU in training, evaluate's mIoU, images/s and device;
- which of the stages run have outputs that differ from a ``dvc.lock`` given with ``--lock-before`` (the committed one:
  the masks should be byte-identical on every machine; trained models are not).

    python benchmarks/repro_summary.py --repo DIR --log repro.log [--lock-before dvc.lock]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

import yaml

STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d) ")
KERNEL = re.compile(r"([A-Za-z0-9_:.]+) does not have a deterministic implementation")
STAGE = re.compile(r"Running stage '([^']+)'")


def stage_seconds(lines: list[str]) -> dict[str, int]:
    """Stage -> seconds from its ``Running stage`` line to the next stage's (or the log's last line)."""
    starts: list[tuple[str, int]] = []
    last = None
    for line in lines:
        stamp = STAMP.match(line)
        if not stamp:
            continue
        h, m, s = map(int, stamp.groups())
        last = h * 3600 + m * 60 + s
        if starts and last < starts[-1][1]:
            last += 24 * 3600  # past midnight
        found = STAGE.search(line)
        if found:
            starts.append((found.group(1), last))
    ends = [t for _, t in starts[1:]] + [last]
    return {name: end - start for (name, start), end in zip(starts, ends, strict=False)}


def warn_only_kernels(text: str) -> Counter[str]:
    return Counter(KERNEL.findall(text))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def model_scores(repo: Path) -> list[tuple[str, str, str, str, str]]:
    """(model, best val mIoU in training, evaluate mIoU, evaluate images/s, device) per model.

    The train stage's metrics.json holds the best epoch's metrics (``val.miou``)."""
    rows = []
    for name in yaml.safe_load((repo / "params.yaml").read_text())["models"]:
        train = read_json(repo / "results" / "train" / name / "metrics.json")
        evaluation = read_json(repo / "results" / "evaluate" / name / "metrics.json")
        speed = read_json(repo / "results" / "evaluate" / name / "speed.json")
        rows.append(
            (
                name,
                fmt(train.get("val", {}).get("miou")),
                fmt(evaluation.get("miou")),
                fmt(speed.get("images_per_second"), ".1f"),
                str(speed.get("device", "-")),
            )
        )
    return rows


def fmt(value: object, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def changed_outputs(before: Path, after: Path, stages: list[str]) -> dict[str, bool]:
    """Stage -> whether any of its outputs' hashes differ between two dvc.lock files, for ``stages``."""

    def outs(path: Path) -> dict[str, list]:
        stages = yaml.safe_load(path.read_text()).get("stages", {}) if path.is_file() else {}
        return {
            name: sorted((o["path"], o.get("md5")) for o in stage.get("outs", []))
            for name, stage in stages.items()
        }

    old, new = outs(before), outs(after)
    return {name: old.get(name) != new.get(name) for name in stages}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--lock-before", type=Path, help="dvc.lock to compare the outputs' hashes with")
    args = parser.parse_args()
    text = args.log.read_text(errors="replace")
    times = stage_seconds(text.splitlines())
    print("stages run (wall s): " + (", ".join(f"{k} {v}" for k, v in times.items()) or "none"))
    kernels = warn_only_kernels(text)
    print(
        "warn-only kernels (times printed): "
        + (", ".join(f"{k} x{v}" for k, v in kernels.most_common()) or "none")
    )
    print(f"  {'model':<12} {'train best val mIoU':>20} {'evaluate mIoU':>14} {'evaluate img/s':>15}  device")
    for name, best, miou, speed, device in model_scores(args.repo):
        print(f"  {name:<12} {best:>20} {miou:>14} {speed:>15}  {device}")
    if args.lock_before:
        changed = changed_outputs(args.lock_before, args.repo / "dvc.lock", list(times))
        print(
            "outputs vs the committed dvc.lock: same for "
            + (", ".join(k for k, v in changed.items() if not v) or "none")
            + "; changed for "
            + (", ".join(k for k, v in changed.items() if v) or "none")
        )


if __name__ == "__main__":
    main()
