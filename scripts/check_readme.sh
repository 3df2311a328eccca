#!/usr/bin/env bash
# Run the README's commands, as written, in a fresh clone of this repository (HEAD), in README order.
#
#   scripts/check_readme.sh              # a fresh .venv from requirements.lock (as `make` makes it)
#   VENV=/path/to/venv scripts/check_readme.sh   # borrow an installed venv's packages instead
#   LIST_ONLY=1 scripts/check_readme.sh          # only check that every README command is listed
#   KEEP=1 scripts/check_readme.sh               # keep the clone afterwards (to open plots/index.html)
#
# Every command in the README's ```bash blocks must be in RUN (run here, must succeed) or in SKIP (with
# the reason it cannot run on a CPU-only Linux machine without COCO); a new README command fails the
# check until it is listed. The default pipeline, one unet experiment and two queued experiments
# train on the CPU: about 30 minutes on 2 cores (31 min with VENV=, on 2 cores shared at load ~4).
set -euo pipefail
repo=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
if [[ -n "${KEEP:-}" ]]; then trap 'echo "kept: $work/clone"' EXIT; else trap 'rm -rf "$work"' EXIT; fi

RUN=(
  "make repro"
  "source .venv/bin/activate"
  "dvc exp run -n unet-r34 -S models.unet.encoder=resnet34"
  "dvc exp show --only-changed --keep 'miou\\.' --drop 'Created|.*/'"
  "cat results/compare.md"
  "dvc metrics diff --md"
  "cocoseg compare --plots HEAD unet-r34"
  "git checkout HEAD -- params.yaml && dvc repro"
  "dvc exp apply unet-r34"
  "dvc exp branch unet-r34 try-resnet34"
  "dvc exp remove unet-r34"
  "git checkout HEAD -- params.yaml && dvc repro"
  "dvc exp run --queue -n lr-1e-3 -S train.lr=0.001"
  "dvc exp run --queue -n lr-5e-3 -S train.lr=0.005"
  "dvc queue start -j 1"
  "dvc queue status"
  "dvc queue logs lr-1e-3 --follow"
  "cocoseg compare --plots"
  "cocoseg predict --model models/unet/model.pt --out predictions photo.jpg more_photos/"
  # Your own data: the exports under my-data/ are made first (tests/local_exports.py); these run last,
  # after the experiment table's check, since --data_root changes data.source in the workspace.
  "cocoseg prepare --ann my-data/roboflow/train/_annotations.coco.json --img_dir my-data/roboflow/train --out_dir my-masks/roboflow --visualize 3"
  "cocoseg prepare --ann my-data/cvat/annotations/instances_default.json --img_dir my-data/cvat/images --out_dir my-masks/cvat --visualize 3"
  "cocoseg prepare --ann my-data/label-studio/result.json --img_dir my-data/label-studio --out_dir my-masks/label-studio --visualize 3"
  "cocoseg prepare --ann my-data/labelme/annotations.json --img_dir my-data/labelme --out_dir my-masks/labelme --visualize 3"
  "cocoseg train --data_root my-data/roboflow"
  "cocoseg prepare --data_root my-data/labelme"
)
SKIP=(
  "make test"                                   # the test suite: run by CI, not a README walk-through
  "python3 -m venv .venv"                       # the CPU-only install: downloads torch (scripts/check_lock.py resolves it)
  "grep -vE '^(nvidia-|cuda-|triton)' requirements.lock > .venv/cpu.lock"
  ".venv/bin/pip install -r .venv/cpu.lock --extra-index-url https://download.pytorch.org/whl/cpu"
  ".venv/bin/pip install --no-deps -e . && touch .venv/.installed"
  "uv venv --python 3.11 .venv"                 # macOS (scripts/check_lock.py resolves the lock for it)
  "uv pip install --python .venv/bin/python -r requirements.lock"
  "uv pip install --python .venv/bin/python --no-deps -e . && touch .venv/.installed"
  "cocoseg tensorboard"                         # a server that runs until stopped (--dry-run checked in tests)
  "dvc exp run -S data.source=coco2017"         # real COCO: gigabytes from cocodataset.org
  "dvc exp run -S data.source=coco2017 -S data.coco.max_images=500"
  "dvc exp run -S data.source=coco2017 -S 'data.splits=[train2017,val2017]'"
  "dvc exp run -S data.source=coco2017 -S masks.categories=voc"
  "python -m cocoseg.acquire.mirror /path/to/coco-folder /tmp/coco-mirror"     # needs a COCO folder
  "python -m http.server 8765 --bind 127.0.0.1 --directory /tmp/coco-mirror &"   # needs a COCO folder
  "dvc exp run -S data.source=coco2017 -S data.coco.base_url=http://127.0.0.1:8765 -S data.coco.md5.annotations_trainval2017=<md5> -S data.coco.md5.val2017=<md5> -S train.epochs=2 -S 'train.image_size=[256,256]'"
  "dvc exp run -S train.accelerator=gpu -S train.devices=1"   # GPUs
  "dvc exp run -S train.accelerator=gpu -S train.devices=4 -S train.strategy=ddp"
  "dvc exp run -S train.accelerator=mps"        # Apple Silicon
  # Sharing with a team: need a team's remote, shared cache folder or group (tests/pipeline/test_team.py
  # runs the same flow against an S3 server on 127.0.0.1: clone + pull + repro, run-cache, two queued runs)
  "git clone <repo> && cd <repo>"
  "dvc pull"
  "dvc repro"
  "dvc remote add -d team s3://my-bucket/cocoseg"
  "dvc remote modify team endpointurl https://minio.example.org"
  "dvc remote add -d team ssh://user@host/srv/dvc/cocoseg"
  "dvc remote add -d team /mnt/shared/dvc-remote/cocoseg"
  "dvc push --run-cache"
  "dvc pull --run-cache"
  "dvc repro --pull"
  "dvc cache dir /srv/dvc-cache"
  "dvc config cache.shared group"
  "chgrp -R ml-team /srv/dvc-cache && chmod g+s /srv/dvc-cache"
  "dvc checkout"
  "dvc exp run --queue -n lr-high -S models.fastscnn.lr=0.02"
  "dvc exp run --queue -n lr-low -S models.fastscnn.lr=0.005"
  "dvc queue start -j 2"
)

# The docs pages' ```bash commands (docs/*.md) beyond the README's: run after the README's (DOCS_RUN), or
# skipped with the reason (DOCS_SKIP); a new docs command fails the check until it is listed.
DOCS_RUN=(
  "make docs"
  "cocoseg train --models fastscnn --lr 0.02 --dry-run"
  "cocoseg compare"
  "cocoseg export --model unet --format onnx"
  "cocoseg export --model fastscnn --format torchscript"
)
DOCS_SKIP=(
  "mkdocs serve"                                # a server that runs until stopped (make docs builds the same pages)
  "benchmarks/gpu_check.sh --cpu-dry-run [--coco DIR]"   # a synopsis; tests/benchmarks/test_gpu_check.py runs the dry run
  "benchmarks/gpu_check.sh --fetch-wheels"      # downloads wheels for a GPU machine
  "benchmarks/gpu_check.sh --fetch-wheels [DIR]"
  "benchmarks/gpu_check.sh [--coco DIR] [--parts \"0 1 2 3 4\"] [--skip-own-data] [--wheels DIR] [--keep]"  # a GPU
  "cp -r ../shared/data/coco2017-val-mini .coco-mini"     # GPU check set-up: needs a COCO folder beside the clone
  "grep -qx '/.coco-mini/' .git/info/exclude || echo '/.coco-mini/' >> .git/info/exclude"
  "grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude"
  "python benchmarks/bench_train_input.py --large-photos --photos ../shared/data/coco2017-val-mini --image-size 512 512"  # COCO photos
  "python benchmarks/large_photos.py ../shared/data/coco2017-val-mini /tmp/large-photos"   # COCO photos
  "python benchmarks/bench_masks.py --coco-root /tmp/large-photos"   # needs the line above
  "cocoseg export --model path/to/model.pt --format onnx --out deploy/seg.onnx"   # a placeholder path
  "cocoseg prepare --ann annotations/instances_default.json --img_dir images --out_dir masks --categories \"person,dining table\""  # a placeholder export
  "cocoseg prepare --ann export/train/_annotations.coco.json --img_dir export/train --out_dir masks/train --visualize 3"  # a placeholder (the README's my-data/ forms run)
  "cocoseg prepare --ann lvis_v1_val.json --img_dir coco/val2017 --out_dir lvis-masks -S masks.overlap=void -S masks.crowd=background"  # LVIS + COCO
  "cocoseg train --data_root path/to/export"    # a placeholder (the README's my-data/roboflow form runs)
  "cocoseg train --models fastscnn --lr 0.02 -n fastscnn-lr002"   # 12 epochs of training; the README's experiments run the same flow
  "dvc plots diff HEAD unet-r34 fastscnn-lr002 --html-template .cache/plots_template.html -o plots"  # needs the line above
  "git checkout HEAD -- params.yaml dvc.lock results && dvc checkout"   # needs the committed models in a cache (a team's remote)
  "mkdir -p /tmp/t/user /tmp/t/repo && echo hi > /tmp/t/user/a.txt && cd /tmp/t/repo"   # a demo in one shell (cd)
  "git init -q && dvc init -q && dvc config cache.type hardlink,symlink,copy"           # same demo
  "dvc stage add -n imp -d ../user -o out 'mkdir -p out && ln ../user/a.txt out/a.txt'" # same demo
  "stat -c %a ../user/a.txt; dvc repro -q; stat -c %a ../user/a.txt"                    # same demo
)

# The commands of markdown files: ```bash blocks, comments dropped, continuation lines joined.
commands_of() {
  for page in "$@"; do awk '/^ *```bash/{f=1;next} /^ *```/{f=0} f' "$page"; done | sed -E 's/^ +//' \
    | sed -E ':a;/\\$/{N;s/\\\n */ /;ba}' | sed -E 's/ +# .*$//; s/ +$//; s/  +/ /g' | grep -v -E '^(#|$)'
}
mapfile -t readme < <(commands_of "$repo/README.md")
missing=0
for command in "${readme[@]}"; do
  listed=0
  for known in "${RUN[@]}" "${SKIP[@]}"; do [[ "$command" == "$known" ]] && listed=1 && break; done
  if [[ $listed == 0 ]]; then echo "README command not in RUN or SKIP: $command"; missing=1; fi
done
[[ $missing == 0 ]] || exit 1
echo "all ${#readme[@]} README commands are listed (${#RUN[@]} to run, ${#SKIP[@]} skipped with a reason)"

mapfile -t docs < <(commands_of "$repo"/docs/*.md | sort -u)
for command in "${docs[@]}"; do
  listed=0
  for known in "${RUN[@]}" "${SKIP[@]}" "${DOCS_RUN[@]}" "${DOCS_SKIP[@]}"; do [[ "$command" == "$known" ]] && listed=1 && break; done
  if [[ $listed == 0 ]]; then echo "docs command not in RUN, SKIP, DOCS_RUN or DOCS_SKIP: $command"; missing=1; fi
done
[[ $missing == 0 ]] || exit 1
echo "all ${#docs[@]} docs commands are listed (${#DOCS_RUN[@]} more to run, ${#DOCS_SKIP[@]} more skipped with a reason)"
[[ -z "${LIST_ONLY:-}" ]] || exit 0

git clone -q "$repo" "$work/clone"
cd "$work/clone"
if [[ -n "${VENV:-}" ]]; then  # a venv of our own whose packages are the borrowed venv's
  "$VENV/bin/python" -m venv --without-pip .venv
  site=$(.venv/bin/python -c 'import site; print(site.getsitepackages()[0])')
  "$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])' > "$site/borrowed.pth"
  echo "$PWD/src" > "$site/cocoseg-src.pth"
  for tool in dvc tensorboard mkdocs; do printf '#!/bin/sh\nexec "%s/.venv/bin/python" -m %s "$@"\n' "$PWD" "$tool" > ".venv/bin/$tool"; done
  printf '#!/bin/sh\nexec "%s/.venv/bin/python" -m cocoseg "$@"\n' "$PWD" > .venv/bin/cocoseg
  chmod +x .venv/bin/*
  touch .venv/.installed
fi
# The README says its `dvc exp show` table fits 120 columns: print it and check its widest line.
check_table() {
  bash -c "$1" > "$work/table.txt" || return 1
  cat "$work/table.txt"
  .venv/bin/python - "$work/table.txt" <<'EOF'
import sys
widest = max(len(line.rstrip()) for line in open(sys.argv[1], encoding="utf-8"))
print(f"widest line: {widest} columns")
sys.exit(widest > 120)
EOF
}
# `dvc queue status`, captured first: `dvc queue status | grep -q` fails under pipefail whenever grep
# exits before dvc has written everything (dvc dies of SIGPIPE), so a wait loop on it never ends.
queue_has() { local status; status=$(dvc queue status) && grep -qE "$1" <<< "$status"; }
# The own-data commands' exports, at the paths the README uses (tests/local_exports.py's builders).
.venv/bin/python - <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, "tests")
from local_exports import write_roboflow, write_split
root = Path("my-data")
write_roboflow(root / "roboflow", {"train": 8, "valid": 4, "test": 2})
write_split(root / "cvat/annotations/instances_default.json", root / "cvat/images", [f"frame_{i:06d}.jpg" for i in range(10)])
write_split(root / "label-studio/result.json", root / "label-studio", [f"images/{i:04x}-photo{i}.jpg" for i in range(10)])
write_split(root / "labelme/annotations.json", root / "labelme", [f"JPEGImages/{i}.jpg" for i in range(10)])
EOF
ran=0
deferred=()
for command in "${RUN[@]}"; do
  if [[ "$command" == *"--data_root"* ]]; then deferred+=("$command"); continue; fi  # after the table check
  if [[ "$command" == "cocoseg predict"* ]]; then  # the photos it reads: two of the sample's images
    cp "$(find data/coco -name '*.jpg' | sort | head -1)" photo.jpg
    mkdir -p more_photos && cp "$(find data/coco -name '*.jpg' | sort | sed -n 2p)" more_photos/
  fi
  if [[ "$command" == "dvc queue logs "* ]]; then  # as the README says: once the experiment is running
    name=$(echo "$command" | awk '{print $4}')
    for _ in $(seq 600); do queue_has "$name +.*(Running|Success|Failed)" && break; sleep 2; done
  fi
  echo "=== $command"
  if [[ "$command" == "source .venv/bin/activate" ]]; then
    source .venv/bin/activate
  elif [[ "$command" == "dvc exp show "* ]]; then
    check_table "$command" || { echo "FAILED: $command"; exit 1; }
  elif [[ "$command" == "cocoseg compare --plots"* ]]; then  # the page must need neither the network nor npm
    mkdir -p "$work/bin" && ln -sf "$(command -v git)" "$work/bin/git"
    PATH="$(dirname "$(command -v python)"):$work/bin" "$BASH" -c "$command" || { echo "FAILED: $command"; exit 1; }
    if grep -qE '<script[^>]*src=|cdn\.jsdelivr' plots/index.html; then
      echo "FAILED: $command: plots/index.html loads a script from the network"; exit 1; fi
  else
    bash -c "$command" || { echo "FAILED: $command"; exit 1; }
  fi
  ran=$((ran + 1))
done
# The queued experiments the README started: let them finish (the clone is removed on exit), then the
# experiment table once more, with them in it.
for _ in $(seq 1800); do queue_has "(Queued|Running)" || break; sleep 2; done
if queue_has "(Queued|Running|Failed)"; then
  dvc queue status; echo "FAILED: the queued experiments"; exit 1
fi
for table in "${RUN[@]}"; do [[ "$table" == "dvc exp show "* ]] && break; done
echo "=== $table   (again, after the queued experiments)"
check_table "$table" || { echo "FAILED: $table"; exit 1; }
for command in "${deferred[@]}"; do  # --data_root sets data.source: local in the workspace
  echo "=== $command"
  bash -c "$command" || { echo "FAILED: $command"; exit 1; }
  ran=$((ran + 1))
done
echo "every README command in RUN ran as written: $ran run, ${#SKIP[@]} skipped with a reason"
git checkout -q -- params.yaml  # the docs' commands on the default data again
for command in "${DOCS_RUN[@]}"; do
  echo "=== $command"
  bash -c "$command" || { echo "FAILED: $command"; exit 1; }
done
echo "every docs command in DOCS_RUN ran as written: ${#DOCS_RUN[@]} run, ${#DOCS_SKIP[@]} skipped with a reason"
