#!/usr/bin/env bash
# The GPU check (docs/gpu.md): everything one run on a GPU machine should show, in one call, most
# important first. Each part prints its figures as it ends, so a run stopped by a time limit still
# shows the parts before. It writes only under a fresh folder (mktemp -d in $TMPDIR, else /tmp) and,
# when $OUT is set, $OUT/gpu_check.log (all it prints) and $OUT/repro.log (part 1's full output).
#
#   benchmarks/gpu_check.sh [--coco DIR] [--parts "0 1 2 3 4"] [--skip-own-data] [--wheels DIR] [--keep]
#                           [--cpu-dry-run]
#   benchmarks/gpu_check.sh --fetch-wheels [DIR]    # here, with PyPI: benchmarks/gpu_wheels.txt into DIR (.whl)
#
#   0  the machine: card, driver, CUDA, torch, CPUs; the carried wheels installed and imported
#   1  `dvc repro` of the default pipeline on the GPU (train.accelerator: gpu) in a fresh git + DVC copy
#      of the repository: stage times, warn-only kernels by name, each model's mIoU and evaluate img/s
#   2  the input benchmark's GPU mode for every model on the real photos of --coco DIR (a COCO folder:
#      annotations/instances_val2017.json + val2017/; without it, part 1's sample): GPU-resident,
#      loader-fed and loader-alone img/s, fed / resident, at 512 px, batch 16, train.deterministic: false
#   3  Fast-SCNN's resizes, PyTorch's kernels against models/resize.py (benchmarks/bench_resize.py), then a
#      profile of its whole training step: the operators and kernels that take its GPU time
#      (benchmarks/profile_step.py)
#   4  own data where it changes the GPU path (last, optional: --skip-own-data or GPU_CHECK_SKIP_OWN_DATA=1):
#      synthetic sets of many classes (GPU_CHECK_CLASSES, default 200) and of 2048x1536 photos: the
#      masks stage's img/s, then part 2's benchmark on them
#
# --cpu-dry-run: every part at toy scale on the CPU, without installing wheels unless --wheels names
# a folder (the test suite runs it without).
# Environment: GPU_CHECK_PYTHON (default /opt/torch/.venv/bin/python3 if present, else python3),
# GPU_CHECK_OWN_MODELS (part 4's models, default all), GPU_CHECK_TIMEOUT_1..4 (seconds per part).
# Wheels: every *.whl of --wheels DIR (default: the repository's .whl/) is installed into the fresh
# folder (pip --target) and put on PYTHONPATH; `python` and `dvc` on PATH are wrappers in a new folder.

set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DRY=0 KEEP=0 COCO="" PARTS="0 1 2 3 4" FETCH=0 FETCH_DIR="" WHEELS=""
[[ ${GPU_CHECK_SKIP_OWN_DATA:-0} == 1 ]] && PARTS="0 1 2 3"

usage() { sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit "${1:-0}"; }

while (($#)); do
    case $1 in
        --coco) COCO=$(cd "$2" && pwd) || exit 2; shift 2 ;;
        --parts) PARTS=$2; shift 2 ;;
        --skip-own-data) PARTS=${PARTS//4/}; shift ;;
        --wheels) WHEELS=$(cd "$2" && pwd) || exit 2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --cpu-dry-run) DRY=1; shift ;;
        --fetch-wheels) FETCH=1; FETCH_DIR=${2:-}; shift $(($# > 1 ? 2 : 1)) ;;
        -h|--help) usage ;;
        *) echo "gpu_check.sh: unknown argument $1" >&2; usage 2 ;;
    esac
done

# --- wheels, fetched here ------------------------------------------------------------------------

fetch_wheels() {  # every pin of gpu_wheels.txt into $1 as a cp312 manylinux wheel
    local dir=${1:-$REPO/.whl} pin rest failed=0
    local plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
                --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
    mkdir -p "$dir"
    while read -r pin rest; do
        [[ -z $pin || $pin == \#* ]] && continue
        if [[ $rest == *build:* ]]; then
            python3 -m pip wheel -q --no-deps --no-binary=:all: -w "$dir" "$pin"
        else
            python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
                "${plat[@]}" -d "$dir" "$pin"
        fi || { echo "FAILED: $pin"; failed=1; }
    done < "$REPO/benchmarks/gpu_wheels.txt"
    local twice
    twice=$(for w in "$dir"/*.whl; do basename "$w"; done | sed -E 's/-[0-9][^-]*-.*//' | tr 'A-Z_.' 'a-z--' \
            | sort | uniq -d)
    [[ -n $twice ]] && { echo "two versions of: $twice (pip would refuse the folder): keep one"; failed=1; }
    echo "$(ls "$dir"/*.whl | wc -l) wheels, $(du -sh "$dir" | cut -f1) in $dir"
    return $failed
}

if ((FETCH)); then fetch_wheels "$FETCH_DIR"; exit; fi

# --- the run's folders, python and helpers --------------------------------------------------------

if [[ -n ${GPU_CHECK_PYTHON:-} ]]; then PY=$GPU_CHECK_PYTHON
elif [[ -x /opt/torch/.venv/bin/python3 ]]; then PY=/opt/torch/.venv/bin/python3
else PY=$(command -v python3); fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
COPY=$WORK/repo
export PYTHONUNBUFFERED=1 DVC_NO_ANALYTICS=1 GIT_PYTHON_REFRESH=quiet GIT_TERMINAL_PROMPT=0
# Caches that would land in /var/tmp, ~/.cache or $TMPDIR go to the new folder too.
export DVC_SITE_CACHE_DIR=$WORK/cache/dvc XDG_CACHE_HOME=$WORK/cache MPLCONFIGDIR=$WORK/cache/matplotlib \
    TORCHINDUCTOR_CACHE_DIR=$WORK/cache/torchinductor TRITON_CACHE_DIR=$WORK/cache/triton
declare -A STATUS=()

if ((DRY)); then  # one model (Fast-SCNN, the light one), one torch thread: tiny tensors gain nothing from two
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    T=(0 300 200 100 200)
    BENCH=(--device cpu --image-size 64 64 --batch 4 --workers 1 --replicate 1 --steps 2 --rounds 1 --settle 0
           --alone-batches 2 --models fastscnn)
    OWN_BENCH=("${BENCH[@]}")
    RESIZE=(--device cpu --batch 2 --classes 5 --image-size 64 64 --repeat 2 --steps 2 --rounds 1)
    PROFILE=(--device cpu --batch 2 --classes 5 --image-size 64 64 --steps 1 --top 5)
    OWN_SETS=("classes 4 96 64" "large 4 320 240")
else
    T=(0 "${GPU_CHECK_TIMEOUT_1:-360}" "${GPU_CHECK_TIMEOUT_2:-240}" "${GPU_CHECK_TIMEOUT_3:-150}"
       "${GPU_CHECK_TIMEOUT_4:-300}")
    BENCH=(--device cuda --image-size 512 512 --batch 16 --workers auto --replicate 8 --steps 30 --rounds 3
           --settle 0.3)
    OWN_BENCH=(--device cuda --image-size 512 512 --batch 16 --workers auto --replicate 8 --steps 20 --rounds 2
               --settle 0.3)
    RESIZE=(--device cuda --batch 16 --classes 81 --image-size 512 512 --repeat 20 --steps 60 --rounds 3)
    PROFILE=(--device cuda --batch 16 --classes 81 --image-size 512 512 --steps 10 --top 25)
    OWN_SETS=("classes 64 640 480" "large 64 2048 1536")
fi

say() { printf '%(%H:%M:%S)T %s\n' -1 "$*"; }
stamp() { while IFS= read -r line; do printf '%(%H:%M:%S)T %s\n' -1 "$line"; done; }

set_params() {  # set_params FILE key.path=YAML ... : a copy's params.yaml, edited
    python - "$@" <<'EOF'
import sys
import yaml
path, *pairs = sys.argv[1:]
params = yaml.safe_load(open(path))
for pair in pairs:
    key, value = pair.split("=", 1)
    *parents, last = key.split(".")
    node = params
    for k in parents:
        node = node[k]
    node[last] = yaml.safe_load(value)
open(path, "w").write(yaml.safe_dump(params, sort_keys=False))
EOF
}

setup_python() {  # the carried wheels, `python` and `dvc` on PATH (wrappers in a new folder)
    mkdir -p "$WORK/bin" "$WORK/site"
    printf '#!/bin/sh\nexec "%s" "$@"\n' "$PY" > "$WORK/bin/python"
    printf '#!/bin/sh\nexec "%s" -m dvc "$@"\n' "$PY" > "$WORK/bin/dvc"
    chmod +x "$WORK/bin/python" "$WORK/bin/dvc"
    export PATH="$WORK/bin:$PATH" PYTHONPATH="$COPY/src:$WORK/site"
    local wheels=("${WHEELS:-$REPO/.whl}"/*.whl)
    if ((DRY)) && [[ -z $WHEELS ]] || [[ ! -e ${wheels[0]} ]]; then
        say "no wheels installed ($( ((DRY)) && [[ -z $WHEELS ]] && echo "dry run" || echo "none in ${WHEELS:-$REPO/.whl}"))"
        return
    fi
    if "$PY" -m pip --version >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
            "${wheels[@]}" > "$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log"; say "installing the wheels FAILED"; return 1; }
    else  # no pip: a wheel is a zip of the files site-packages gets
        "$PY" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' \
            "$WORK/site" "${wheels[@]}"
    fi
    say "installed ${#wheels[@]} wheels into $WORK/site"
}

copy_repo() {  # what a clone of the repository has, with part 1's params.yaml (accelerator; toy scale)
    mkdir -p "$COPY"
    tar -C "$REPO" --exclude=__pycache__ --exclude='*.egg-info' -cf - dvc.yaml params.yaml dvc.lock pyproject.toml \
        .gitignore .dvcignore .dvc/config .dvc/plots stages src benchmarks | tar -C "$COPY" -xf - || return 1
    cp "$REPO/dvc.lock" "$WORK/dvc.lock.committed"
    if ((DRY)); then  # toy scale: 16 sample images, Fast-SCNN alone, one epoch of 64 px, on the CPU
        set_params "$COPY/params.yaml" train.accelerator=cpu data.sample.num_images=16 data.sample.min_size=64 \
            data.sample.max_size=80 masks.workers=1 masks.preview=1 train.epochs=1 "train.image_size=[64, 64]" \
            train.workers=0 train.devices=1 evaluate.speed_batches=1 evaluate.overlays=1 evaluate.workers=0 \
            "models={fastscnn: {arch: fastscnn, lr: 0.01}}"
    else
        set_params "$COPY/params.yaml" train.accelerator=gpu
    fi
}

init_copy() {  # the copy as a new git + DVC repository with one commit (DVC and dvclive read the git state)
    (
        cd "$COPY" || exit 1
        mv .dvc "$WORK/dvc.shipped"
        if command -v git >/dev/null; then git init -q; else python -c 'import dulwich.porcelain as p; p.init(".")'; fi
        dvc init -q && cp -r "$WORK/dvc.shipped/." .dvc/ && dvc config core.check_update false
    ) && commit_copy "the default pipeline, $(grep -m1 -o 'accelerator: [a-z]*' "$COPY/params.yaml")"
}

commit_copy() {  # commit what the copy holds
    (
        cd "$COPY" || exit 1
        if command -v git >/dev/null; then
            git add -A && git -c user.name=gpu-check -c user.email=gpu-check@localhost -c commit.gpgsign=false \
                commit -q -m "${1:-gpu check}"
        else
            python - "${1:-gpu check}" <<'EOF'
import sys
import dulwich.porcelain as p
p.add(".")
who = b"gpu-check <gpu-check@localhost>"
p.commit(".", message=sys.argv[1].encode(), author=who, committer=who)
EOF
        fi
    )
}

masks_of() {  # masks_of COCO OUT PARAMS: the masks stage on a COCO folder; prints its img/s
    local start=$EPOCHREALTIME log=$WORK/masks.${2##*/}.log
    (cd "$COPY" && timeout "${T[$PART]}" python stages/masks.py --coco "$1" --out "$2" --params "$3") > "$log" 2>&1 \
        || { tail -20 "$log"; return 1; }
    python - "$2" "$start" "$EPOCHREALTIME" <<'EOF'
import json, sys
counts = json.load(open(f"{sys.argv[1]}/report.json"))["counts"]
classes = len(json.load(open(f"{sys.argv[1]}/labels.json"))["classes"])
seconds = float(sys.argv[3]) - float(sys.argv[2])
print(f"masks stage: {counts['images_written']} of {counts['images']} images, {classes} classes (with background), "
      f"{seconds:.1f} s with the process's start and imports: {counts['images_written'] / seconds:.1f} img/s")
EOF
}

bench_input() {  # bench_input COCO MASKS ARGS...: the input benchmark on a built set
    local coco=$1 masks=$2
    shift 2
    (cd "$COPY" && timeout "${T[$PART]}" python benchmarks/bench_train_input.py --params "$WORK/params.bench.yaml" \
        --coco "$coco" --masks "$masks" "$@")
}

# --- the parts ------------------------------------------------------------------------------------

part0() {
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null \
        || echo "nvidia-smi: none"
    echo "CPUs: $(grep -c ^processor /proc/cpuinfo); memory: $(free -g | awk '/Mem:/ {print $2}') GiB;" \
        "/dev/shm (the DataLoader workers' batches): $(df -h /dev/shm 2>/dev/null | awk 'NR == 2 {print $2}')"
    python - <<'EOF'
import importlib
import os
import platform

import torch

gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}, GPU {gpu}, torch threads {torch.get_num_threads()}, "
      f"affinity {len(os.sched_getaffinity(0))} cores")
missing, found = [], []
for name in ["dvc", "dvclive", "pycocotools", "segmentation_models_pytorch", "isal", "lightning", "torchmetrics",
             "timm", "cv2", "numpy", "PIL", "matplotlib", "tensorboard", "yaml", "tqdm", "psutil", "cocoseg"]:
    try:
        module = importlib.import_module(name)
        found.append(f"{name} {getattr(module, '__version__', '')}".strip())
    except Exception as err:  # noqa: BLE001 - every failure is reported, none stops the check
        missing.append(f"{name} ({type(err).__name__}: {err})")
print("imports: " + ", ".join(found))
if missing:
    raise SystemExit("MISSING: " + "; ".join(missing))
EOF
    dvc --version
}

part1() {
    init_copy || return 1
    say "dvc repro in $COPY"
    local start=$SECONDS rc
    (cd "$COPY" && timeout "${T[1]}" dvc repro) 2>&1 | stamp > "$WORK/repro.log"
    rc=${PIPESTATUS[0]}
    [[ -n ${OUT:-} ]] && cp "$WORK/repro.log" "$OUT/repro.log"
    echo "dvc repro: exit $rc in $((SECONDS - start)) s"
    python "$COPY/benchmarks/repro_summary.py" --repo "$COPY" --log "$WORK/repro.log" \
        --lock-before "$WORK/dvc.lock.committed"
    [[ -f $COPY/results/compare.md ]] && sed -n '3,$p' "$COPY/results/compare.md"
    ((rc == 0)) || { echo "last lines of the log:"; tail -40 "$WORK/repro.log"; }
    return "$rc"
}

bench_params() {  # the copy's params with train.deterministic: false, for parts 2 and 4
    [[ -f $WORK/params.bench.yaml ]] && return
    cp "$COPY/params.yaml" "$WORK/params.bench.yaml"
    set_params "$WORK/params.bench.yaml" train.deterministic=false masks.preview=0
}

part2() {
    bench_params || return 1
    local coco=$COCO masks=$WORK/coco-masks
    if [[ -z $coco ]]; then
        coco=$COPY/data/coco masks=$COPY/data/masks
        echo "no --coco folder: part 1's sample ($coco), not real photos"
        [[ -f $masks/split.json ]] || { echo "and part 1 left no masks"; return 1; }
    else
        echo "real COCO photos: $coco ($(ls "$coco/val2017" | wc -l) images)"
        masks_of "$coco" "$masks" "$WORK/params.bench.yaml" || return 1
    fi
    bench_input "$coco" "$masks" "${BENCH[@]}" | tee "$WORK/part2.txt"
    local rc=${PIPESTATUS[0]}
    against_targets "$WORK/part2.txt"
    return "$rc"
}

against_targets() {  # part 2's table against the issue's targets (GPU figures: a dry run falls short)
    python - "$1" <<'EOF'
import sys
resident = {"fastscnn": 700, "unet": 400, "deeplabv3": 370}  # img/s, bf16, 512 px, batch 16, no compile
for line in open(sys.argv[1]):
    cells = line.split()  # model batch resident fed (wait) fed/res alone cpu (main), one worker setting
    if len(cells) == 9 and cells[0] in resident and cells[1].isdigit():
        res, ratio, goal = float(cells[2]), float(cells[5]), resident[cells[0]]
        print(f"target {cells[0]}: resident {res:.1f} img/s {'>=' if res >= goal else '< '} {goal} "
              f"{'ok' if res >= goal else 'SHORT'}; fed/resident {ratio:.2f} {'>=' if ratio >= 0.95 else '< '} 0.95 "
              f"{'ok' if ratio >= 0.95 else 'SHORT'}")
EOF
}

part3() {  # the resizes side by side, then where the rest of a Fast-SCNN step's GPU time goes
    (cd "$COPY" && timeout "${T[3]}" python benchmarks/bench_resize.py "${RESIZE[@]}") || return 1
    (cd "$COPY" && timeout "${T[3]}" python benchmarks/profile_step.py --model fastscnn "${PROFILE[@]}" 2>&1 \
        | grep -v -e '^USDT:' -e '^ERROR:.*DeviceProperties')
}

part4() {
    bench_params || return 1
    local classes=${GPU_CHECK_CLASSES:-200} models set name images w h k rc=0
    read -r -a models <<< "${GPU_CHECK_OWN_MODELS:-}"
    # Today's masks are uint8 with 255 as void: at most 254 classes. Once uint16 masks land, run
    # GPU_CHECK_CLASSES=1203 (LVIS) to take the uint16 path (masks, loader, a 1,204-channel head).
    ((classes > 254)) && echo "note: $classes classes need uint16 masks"
    for set in "${OWN_SETS[@]}"; do
        read -r name images w h <<< "$set"
        k=$classes
        [[ $name == large ]] && k=80
        echo "-- set '$name': $images synthetic images of ${w}x$h, $k categories"
        python "$COPY/benchmarks/make_synthetic_coco.py" --out "$WORK/own-$name" --images "$images" --size "$w" "$h" \
            --classes "$k" --seed 0 || { rc=1; continue; }
        masks_of "$WORK/own-$name" "$WORK/own-$name-masks" "$WORK/params.bench.yaml" || { rc=1; continue; }
        bench_input "$WORK/own-$name" "$WORK/own-$name-masks" "${OWN_BENCH[@]}" \
            ${models[@]:+--models "${models[@]}"} || rc=1
    done
    return $rc
}

TITLES=([0]="the machine" [1]="dvc repro of the default pipeline" [2]="input benchmark, every model"
        [3]="Fast-SCNN's resizes and step profile" [4]="own data: many classes, large photos")

main() {
    say "gpu_check.sh ($( ((DRY)) && echo "CPU dry run" || echo "GPU")): parts $PARTS; work folder $WORK; python $PY"
    setup_python
    copy_repo || { say "could not copy the repository"; return 1; }
    for PART in $PARTS; do
        echo
        say "== part $PART: ${TITLES[$PART]}"
        local start=$SECONDS
        "part$PART"
        STATUS[$PART]=$?
        say "== part $PART: $( ((STATUS[$PART] == 0)) && echo ok || echo "FAILED (exit ${STATUS[$PART]})") in $((SECONDS - start)) s"
    done
    local failed=""
    for PART in $PARTS; do ((STATUS[$PART] == 0)) || failed+=" $PART"; done
    echo
    say "gpu_check.sh done: parts$([ -n "$failed" ] && echo " failed:$failed" || echo " all ok")"
    ((KEEP)) || rm -rf "$WORK"
    [[ -z $failed ]]
}

if [[ -n ${OUT:-} ]]; then
    mkdir -p "$OUT"
    main 2>&1 | tee "$OUT/gpu_check.log"
    exit "${PIPESTATUS[0]}"
fi
main
