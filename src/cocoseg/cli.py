"""The ``cocoseg`` command: the seed's prepare_dataset.py / train.py flags, translated onto DVC.

DVC stays the interface that does the work; each subcommand only builds a ``dvc`` command line (printed
before it runs, so users learn the DVC form) from flags the seed's scripts had:

    cocoseg prepare --visualize 5            ->  dvc exp run masks -S masks.preview=5
    cocoseg prepare --ann F --img_dir D --out_dir O   ->  masks of any COCO file, written to O (no DVC)
    cocoseg prepare --data_root my-export    ->  dvc exp run masks -S data.source=local -S data.splits=[...] ...
    cocoseg train --models unet --lr 1e-3    ->  dvc exp run evaluate@unet compare -S +models.unet.lr=0.001
    cocoseg compare                          ->  dvc exp show, compact: each model's mIoU, changed params
    cocoseg compare --plots [REV ...]        ->  dvc plots show (or diff REV ...), viewable offline
    cocoseg predict --model m.pt photo.jpg   ->  writes predictions/ (no DVC involved)
    cocoseg export --model unet --format onnx -> exports/unet.onnx and its .json (no DVC involved)
    cocoseg tensorboard                      ->  tensorboard --logdir runs
    cocoseg verify                           ->  git clone + dvc repro --force, hashes against dvc.lock

``--dry-run`` on any subcommand prints the command without running it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from cocoseg.core.arithmetic import add_arithmetic_flags, pin_arithmetic
from cocoseg.core.errors import UserError
from cocoseg.core.layout import RUNS_DIR, model_file
from cocoseg.core.params import Params, load_params

log = logging.getLogger("cocoseg.cli")

EXPORTS_DIR = "exports"  # cocoseg export writes here (git-ignored): models/<name> is a DVC output
# The compact experiment table (the README's): every model's mIoU (results/miou.json's miou.<model>,
# kept even where unchanged) and the params that differ between the rows shown; `--drop` hides the time
# and every column DVC names by a file path: the per-model metrics files and the stage dependencies.
EXP_SHOW = ["dvc", "exp", "show", "--only-changed", "--keep", r"miou\.", "--drop", "Created|.*/"]
# Offline plots: `dvc plots show` / `diff` with the vega libraries inlined (evaluation/offline_plots.py).
PLOTS_TEMPLATE = ".cache/plots_template.html"
PLOTS_OUT = "plots"


class CliError(UserError):
    """A flag the translation cannot honour (an unknown model, a data root that is not a folder)."""


def split_list(text: str) -> list[str]:
    """The seed wrote ``--models unet,deeplabv3``; spaces after commas are forgiven."""
    return [part.strip() for part in text.split(",") if part.strip()]


def gpu_overrides(gpu: str | None) -> list[str]:
    """``--gpu 0`` / ``--gpu 0,1`` -> those device indices; ``--gpu -1`` or ``cpu`` -> the CPU."""
    if gpu is None:
        return []
    if gpu.strip() in ("-1", "cpu"):
        return ["train.accelerator=cpu", "train.devices=1"]
    try:
        indices = [int(part) for part in split_list(gpu)]
    except ValueError:
        raise CliError(f"--gpu {gpu!r}: expected GPU indices such as 0 or 0,1, or -1 for the CPU") from None
    return ["train.accelerator=gpu", f"train.devices=[{','.join(map(str, indices))}]"]


def setting_overrides(params: Params, models: list[str], values: dict[str, object]) -> list[str]:
    """-S values for lr / epochs / batch_size over the chosen models.

    A model that sets its own value in params.yaml (fastscnn's lr) ignores ``train.<key>``, so it gets
    ``models.<name>.<key>``. When every model is chosen the others share ``train.<key>``; when only some
    are, each chosen model gets its own key (``+`` adds a key params.yaml lacks, in DVC's Hydra syntax),
    so the models left out keep their results.
    """
    overrides = []
    for key, value in values.items():  # the flag is the key under train / models.<name>
        if value is None:
            continue
        own = [m for m in models if getattr(params.model(m), key) is not None]
        shared = [m for m in models if m not in own]
        if shared and set(models) == set(params.models):
            overrides.append(f"train.{key}={value}")
            shared = []
        overrides += [
            f"{'' if m in own else '+'}models.{m}.{key}={value}" for m in models if m in own or m in shared
        ]
    return overrides


def train_command(params: Params, args: argparse.Namespace) -> list[str]:
    models = list(params.models) if args.models is None else split_list(args.models)
    if not models:  # --models "" or ",,,": naming no model must not mean every model
        raise CliError(
            f"--models {args.models!r}: names no model; expected comma-separated names of params.yaml's "
            f"models ({', '.join(params.models)}), or leave --models out to train them all"
        )
    unknown = [m for m in models if m not in params.models]
    if unknown:
        raise CliError(
            f"--models: {', '.join(unknown)} not in params.yaml's models section; "
            f"defined: {', '.join(params.models)} (a new model is one entry there)"
        )
    sets = [
        *data_root_overrides(params, args.data_root, args.queue),
        *gpu_overrides(args.gpu),
        *setting_overrides(
            params, models, {"lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size}
        ),
        *args.set,
    ]
    # Some models only: their evaluate stages (DVC runs what they need) and compare, so the comparison and
    # results/miou.json hold this experiment's scores; the models left out are not retrained.
    targets = [] if set(models) == set(params.models) else [*(f"evaluate@{m}" for m in models), "compare"]
    return _exp_run(targets, sets, args)


def prepare_command(params: Params, args: argparse.Namespace) -> list[str]:
    sets = data_root_overrides(params, args.data_root, args.queue)
    sets += [] if args.visualize is None else [f"masks.preview={args.visualize}"]
    return _exp_run(["masks"], [*sets, *args.set], args)


def prepare_from_file(args: argparse.Namespace) -> int:
    """``cocoseg prepare --ann``: the masks stage's code on one COCO file, outside any DVC project."""
    if not (args.img_dir and args.out_dir):
        raise CliError("--ann: give --img_dir (the folder its file names start from) and --out_dir too")
    used = [
        flag
        for flag, value in (("--queue", args.queue), ("-n", args.name), ("--data_root", args.data_root))
        if value
    ]
    if used:
        raise CliError(f"{used[0]}: not with --ann, which builds the masks directly, without DVC")
    categories = args.categories
    if categories is not None and categories not in ("all", "voc"):
        categories = split_list(categories)  # names may hold spaces ("dining table"), not commas
    flags = {
        "categories": categories,
        "overlap": args.overlap,
        "crowd": args.crowd,
        "workers": args.workers,
        "preview": args.visualize or 0,
    }
    from cocoseg.masks import standalone

    cfg = standalone.parse_settings(
        args.set, {key: value for key, value in flags.items() if value is not None}
    )
    if args.dry_run:  # the masks settings it would use, checked, as params.yaml would hold them
        _emit(yaml.safe_dump({"masks": dataclasses.asdict(cfg)}, sort_keys=False))
        return 0
    standalone.prepare_from_file(Path(args.ann), Path(args.img_dir), Path(args.out_dir), cfg, args.seed)
    return 0


def _add_ann_flags(parser: argparse.ArgumentParser) -> None:
    """The seed's ``prepare_dataset.py --ann --img_dir --out_dir``, and the masks options as flags."""
    parser.add_argument("--ann", help="a COCO-format annotation file: make its masks directly, without DVC")
    parser.add_argument("--img_dir", help="with --ann: the folder the file's image names start from")
    parser.add_argument("--out_dir", help="with --ann: where the masks go (replaced whole)")
    parser.add_argument(
        "--categories",
        help="with --ann: all, voc, or names and supercategory:<name>, comma-separated (masks.categories)",
    )
    parser.add_argument("--overlap", help="with --ann: masks.overlap")
    parser.add_argument("--crowd", help="with --ann: masks.crowd (void or background)")
    parser.add_argument("--workers", type=int, help="with --ann: masks.workers (0 = one per core)")
    parser.add_argument("--seed", type=int, default=42, help="with --ann: the previews' seed (base.seed)")


def compare_command(params: Params, args: argparse.Namespace) -> list[str]:
    if args.plots is None:
        return [*EXP_SHOW, *(["--all-commits"] if args.all else [])]
    plots = ["plots", "diff", *args.plots] if args.plots else ["plots", "show"]
    return ["dvc", *plots, "--html-template", PLOTS_TEMPLATE, "-o", PLOTS_OUT]


def tensorboard_command(params: Params, args: argparse.Namespace) -> list[str]:
    return ["tensorboard", "--logdir", args.logdir, "--port", str(args.port)]


def _exp_run(targets: list[str], sets: list[str], args: argparse.Namespace) -> list[str]:
    command = ["dvc", "exp", "run", *targets]
    for value in sets:
        command += ["-S", value]
    if args.name:
        command += ["-n", args.name]
    return command + (["--queue"] if args.queue else [])


def data_root_overrides(params: Params, data_root: str | None, queue: bool = False) -> list[str]:
    """``--data_root DIR``: -S values that point the pipeline at the COCO-format export in DIR, from the
    layout recognised there (cocoseg.acquire.layouts): data.source=local, data.splits = every split found,
    and each split's annotation file and images folder (relative to the repository when inside it, else
    absolute). ``data`` means the pipeline's own data: no values."""
    if data_root is None or data_root.rstrip("/") == "data":
        return []
    root = Path(data_root)
    if not root.is_dir():
        raise CliError(f"--data_root {data_root}: no such folder")
    from cocoseg.acquire.layouts import find_folder_layout

    layout = find_folder_layout(root)
    log.info("--data_root %s: %s", data_root, layout.describe())
    for name in layout.splits:
        if yaml.safe_load(name) != name:
            raise CliError(
                f"--data_root {data_root}: split {name!r} would read as {yaml.safe_load(name)!r} in "
                "params.yaml; rename its folder, or write data.local.splits in params.yaml by hand"
            )
    base = _path_for_params(root)
    if queue and not base.is_absolute() and not root.with_name(root.name + ".dvc").is_file():
        log.warning(
            "--queue: a queued experiment runs in a copy of the repository, which holds %s only if git "
            "or DVC tracks it (dvc add %s), or give its absolute path",
            base,
            base,
        )
    entries = ", ".join(
        f"{name}: {{annotations: {hydra_quote((base / split.annotations).as_posix())}, "
        f"images: {hydra_quote((base / split.images).as_posix())}}}"
        for name, split in layout.splits.items()
    )
    # `++` sets the key whether or not params.yaml has it; entries already there would be merged with
    # the new ones, so they are deleted (`~`) first
    splits = (
        [f"++data.local.splits={{{entries}}}"]
        if not params.data.local.splits
        else ["~data.local.splits", f"+data.local.splits={{{entries}}}"]
    )
    names = ",".join(layout.splits)  # safe names (core.layout.split_name_problem) that YAML reads as strings
    return ["data.source=local", f"data.splits=[{names}]", *splits]


def _path_for_params(root: Path) -> Path:
    """``root`` relative to the repository (the working folder) when inside it, else absolute."""
    absolute, here = root.resolve(), Path.cwd().resolve()
    return absolute.relative_to(here) if absolute.is_relative_to(here) else absolute


def hydra_quote(text: str) -> str:
    """``text`` as a double-quoted string of DVC's -S (Hydra) grammar: a quote, and backslashes before one
    or at the end, escaped with a backslash. (Double quotes keep the shell's single quotes plain.)"""
    escaped = re.sub(r'(\\*)"', lambda m: m[1] * 2 + '\\"', text)
    return '"' + re.sub(r"(\\+)$", lambda m: m[1] * 2, escaped) + '"'


# The README's seed-mapping table is generated from these rows (tests/test_cli.py checks it).
SEED_EXAMPLES = [
    ("python prepare_dataset.py --visualize 5", "cocoseg prepare --visualize 5"),
    (
        (
            "python train.py --data_root data --models unet,deeplabv3,fastscnn --gpu 0 --lr 1e-3 --batch_size 8 "
            "--epochs 20"
        ),
        (
            "cocoseg train --data_root data --models unet,deeplabv3,fastscnn --gpu 0 --lr 1e-3 "
            "--batch_size 8 --epochs 20"
        ),
    ),
    (
        "python train.py --models unet --lr 1e-3 --epochs 20",
        "cocoseg train --models unet --lr 1e-3 --epochs 20",
    ),
    (
        "python train.py --models fastscnn --batch_size 16",
        "cocoseg train --models fastscnn --batch_size 16 --queue",
    ),
    ("python train.py --gpu -1", "cocoseg train --gpu -1"),
    ("(compare the runs by hand)", "cocoseg compare"),
    ("(plot the runs by hand)", "cocoseg compare --plots HEAD fastscnn-lr002"),
    ("tensorboard --logdir runs", "cocoseg tensorboard"),
]


def mapping_table(params: Params) -> str:
    """The README's markdown table: seed command | cocoseg command | the DVC command it runs."""
    rows = ["| seed | `cocoseg` | runs |", "|---|---|---|"]
    for seed, ours in SEED_EXAMPLES:
        words = shlex.split(ours)[1:]
        args = build_parser().parse_args(words)
        dvc = shlex.join(args.command(params, args))
        # a | inside a cell (the --keep regex) must be escaped, or markdown starts a new column
        rows.append("| " + " | ".join(f"`{cell}`".replace("|", "\\|") for cell in (seed, ours, dvc)) + " |")
    return "\n".join(rows) + "\n"


def _add_common(parser: argparse.ArgumentParser, exp: bool = False) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    parser.add_argument("--params", default="params.yaml", help="the params.yaml the translation reads")
    if exp:
        parser.add_argument(
            "--data_root",
            metavar="DIR",
            help="a COCO-format export (Roboflow, CVAT, Label "
            "Studio, labelme2coco ...) to use instead of params.yaml's data; data: the pipeline's own",
        )
        parser.add_argument("--queue", action="store_true", help="queue it; dvc queue start runs the queue")
        parser.add_argument("-n", "--name", help="experiment name")
        parser.add_argument(
            "-S",
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="any other parameter, passed to dvc exp run -S as is",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cocoseg", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(
        dest="subcommand", required=True, metavar="{prepare,train,compare,predict,export,tensorboard,verify}"
    )
    prep = sub.add_parser("prepare", help="download, extract, make masks (the seed's prepare_dataset.py)")
    prep.add_argument("--visualize", type=int, metavar="N", help="preview panels to draw (masks.preview)")
    _add_ann_flags(prep)
    _add_common(prep, exp=True)
    train = sub.add_parser("train", help="train, evaluate models in a DVC experiment (the seed's train.py)")
    train.add_argument("--models", help="comma-separated names of params.yaml's models (default: all)")
    train.add_argument("--gpu", help="GPU index(es) such as 0 or 0,1; -1 for the CPU")
    train.add_argument("--lr", type=float)
    train.add_argument("--batch_size", type=int)
    train.add_argument("--epochs", type=int)
    _add_common(train, exp=True)
    _add_compare(sub)
    tb = sub.add_parser("tensorboard", help="TensorBoard over every run's logs, side by side")
    tb.add_argument("--logdir", default=RUNS_DIR)
    tb.add_argument("--port", type=int, default=6006)
    _add_common(tb)
    sub.add_parser("predict", help="segment your own images with a trained model", add_help=False)
    _add_export(sub)
    _add_verify(sub)
    for name, command in (
        ("prepare", prepare_command),
        ("train", train_command),
        ("compare", compare_command),
        ("tensorboard", tensorboard_command),
    ):
        sub.choices[name].set_defaults(command=command)
    return parser


def _add_compare(sub: argparse._SubParsersAction) -> None:
    comp = sub.add_parser("compare", help="the compact experiment table, or the plots rendered offline")
    comp.add_argument(
        "--plots",
        nargs="*",
        metavar="REV",
        help="every plot to plots/index.html, viewable offline; with revisions (commits, "
        "branches, experiment names), those revisions' plots overlaid (dvc plots diff)",
    )
    comp.add_argument("--all", action="store_true", help="experiments of every commit, not only HEAD's")
    _add_common(comp)


def _add_export(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="a trained model as ONNX or TorchScript, with its preprocessing")
    export.add_argument(
        "--model",
        required=True,
        help="a params.yaml model name (models/<name>/model.pt) or the path of a model.pt",
    )
    export.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    export.add_argument(
        "--out",
        help="the file to write (default: exports/<name>.onnx or .torchscript.pt); "
        "its preprocessing goes beside it, in <file>.json",
    )


def _add_verify(sub: argparse._SubParsersAction) -> None:
    verify = sub.add_parser(
        "verify",
        help="rerun the committed pipeline in a temporary clone; list each "
        "output whose hash differs from dvc.lock",
    )
    verify.add_argument(
        "stages",
        nargs="*",
        help="rerun only these (e.g. train@unet evaluate@unet); the "
        "others' outputs come from this repository's DVC cache",
    )
    verify.add_argument(
        "--workdir",
        type=Path,
        help="where the temporary clone goes (default: the system's "
        "temporary folder); it needs room for the whole pipeline's outputs",
    )
    verify.add_argument("--keep", action="store_true", help="keep the clone afterwards, to inspect it")


def verify_command(args: argparse.Namespace) -> int:
    """``cocoseg verify``: 0 when the rerun reproduces every output of dvc.lock, 1 when one differs."""
    from cocoseg.verify import verify

    return verify(Path.cwd(), args.stages, args.workdir, args.keep)


def run_predict(argv: list[str]) -> None:
    """``cocoseg predict``: its arithmetic pinned as evaluate's is, before its module imports torch."""
    flags = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    add_arithmetic_flags(flags)
    try:
        known, _ = flags.parse_known_args(argv)
        pin_arithmetic(known.deterministic, known.threads)
    except argparse.ArgumentError:
        pass  # a bad --threads: predict's own parser says so, with its usage
    from cocoseg.evaluation.predict import main as predict_main

    predict_main(argv)


def predict_cli() -> None:
    """The ``cocoseg-predict`` script."""
    from cocoseg.core.stage import run_stage

    run_stage(lambda: run_predict(sys.argv[1:]))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["predict"]:  # its own parser, shared with the cocoseg-predict script
        run_predict(argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    if args.subcommand == "export":
        export(args.model, args.format, args.out)
        return 0
    if args.subcommand == "verify":
        return verify_command(args)
    if args.subcommand == "prepare" and args.ann:
        return prepare_from_file(args)
    params = load_params(args.params) if args.subcommand in ("train", "prepare") else None
    command = args.command(params, args)
    _emit("$ " + shlex.join(command) + "\n")  # the DVC form, so users learn it
    if args.dry_run:
        return 0
    if "--html-template" in command:  # the page's Vega libraries, from vl-convert-python (once)
        from cocoseg.evaluation.offline_plots import write_plots_template

        write_plots_template(Path(PLOTS_TEMPLATE))
    if command[0] == "dvc":  # the dvc of this Python, whatever PATH says
        command = [sys.executable, "-m", "dvc", *command[1:]]
    return subprocess.run(command, check=False).returncode


def export(model: str, fmt: str, out: str | None) -> None:
    """``cocoseg export``: a name reads models/<name>/model.pt; the file goes to exports/ unless ``out`` says."""
    from cocoseg.models import check_model_name

    if model.endswith(".pt") or "/" in model:
        path, name = Path(model), Path(model).parent.name or Path(model).stem
    else:
        check_model_name(model)
        path, name = model_file(model), model
    from cocoseg.models.export import export_model, export_path  # torch: only now

    export_model(path, fmt, Path(out) if out else export_path(Path(EXPORTS_DIR), name, fmt))


def _emit(text: str) -> None:
    """The command's own output (the DVC command it runs) goes to stdout, where a user pipes or reads it;
    diagnostics go through logging to stderr."""
    sys.stdout.write(text)
    sys.stdout.flush()


def cli() -> None:
    from cocoseg.core.stage import run_stage

    run_stage(lambda: sys.exit(main()))
