#!/usr/bin/env bash
# GPU smoke test of geo_ntl: one prepared script, under 8 minutes on one GPU, figures in a JSON.
#
#   bash benchmarks/gpu_smoke.sh                      # on a GPU machine: --device cuda, 8192^2
#   DEVICE=cpu SIZE=512 CROP=256 STEPS_CROP=96 SCENE=crop.tif bash benchmarks/gpu_smoke.sh
#                                      # CPU rehearsal at a toy size (SCENE: default the sample AOI)
#
# Runs, each step timed and its exit status and last line recorded (a failing step does not
# stop the others):
#   nvidia-smi; deblur, enhance and deblur+enhance on the sample AOI with --device $DEVICE and
#   --workers 0, 1 and 2 (2 on a one-GPU machine must be refused: exit 2, one error line);
#   the max difference between the --workers 0 and 1 outputs; two training steps and a resume;
#   then benchmarks/gpu_smoke.py: CPU vs device max difference, tiled vs whole on the device,
#   peak device memory at SIZE^2, a forced out-of-memory, GAN and enhancer throughput (MP/s).
# Writes OUT_JSON (default benchmarks/results/gpu_smoke_<device>.json).
set -uo pipefail

DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-8192}
CROP=${CROP:-1024}
STEP_TIMEOUT=${STEP_TIMEOUT:-150}  # seconds; the library checks get twice that
STEPS_CROP=${STEPS_CROP:-128}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT_JSON=${OUT_JSON:-$HERE/results/gpu_smoke_${DEVICE%%:*}.json}
WORK=$(mktemp -d -t geo_ntl_gpu_smoke.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
STEPS="$WORK/steps.jsonl"
SCENE=${SCENE:-$(python -c "from geo_ntl.sample_data import sample_aoi; print(sample_aoi().scene)")}
START=$(date +%s)

# step NAME COMMAND...: run it, record {name, rc, seconds, last line of its output}.
step() {
    local name=$1
    shift
    local t0 t1 rc
    t0=$(date +%s.%N)
    timeout "$STEP_TIMEOUT" "$@" >"$WORK/$name.log" 2>&1
    rc=$?  # 124: ran past STEP_TIMEOUT
    t1=$(date +%s.%N)
    python - "$name" "$rc" "$t0" "$t1" "$WORK/$name.log" >>"$STEPS" <<'PY'
import json, sys
name, rc, t0, t1, log = sys.argv[1:]
lines = [l for l in open(log, errors="replace").read().splitlines() if l.strip()]
print(json.dumps({"name": name, "rc": int(rc), "seconds": round(float(t1) - float(t0), 2),
                  "last_line": lines[-1][:400] if lines else ""}))
PY
    echo "$name: exit $rc ($(tail -n 1 "$WORK/$name.log" 2>/dev/null | cut -c1-160))"
}

if command -v nvidia-smi >/dev/null; then
    step nvidia_smi nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader
else
    step nvidia_smi echo "nvidia-smi: not found"
fi

for workers in 0 1 2; do
    step "deblur_w$workers" geo-ntl deblur "$SCENE" --out "$WORK/deblur_w$workers.tif" \
        --device "$DEVICE" --workers "$workers"
    step "enhance_w$workers" geo-ntl enhance "$SCENE" --out "$WORK/enhance_w$workers.tif" \
        --device "$DEVICE" --workers "$workers"
    step "deblur_enhance_w$workers" geo-ntl deblur "$SCENE" --enhance \
        --out "$WORK/deblur_enhance_w$workers.tif" --device "$DEVICE" --workers "$workers"
done

step workers_0_vs_1 python - "$WORK" <<'PY'
import json, sys
import numpy as np, rasterio
work = sys.argv[1]
out = {}
for name in ("deblur", "enhance", "deblur_enhance"):
    try:
        a, b = (rasterio.open(f"{work}/{name}_w{w}.tif").read().astype(np.int16) for w in (0, 1))
        out[name] = int(np.abs(a - b).max())
    except Exception as exc:  # an output a failed step did not write
        out[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"max_dn": out}))
PY

train=(geo-ntl train --out-dir "$WORK/run" --cities 1 --city-size "$STEPS_CROP" --crop "$STEPS_CROP"
       --batch-size 1 --refresh-every 0 --checkpoint-every 1 --device "$DEVICE")
step train_2_steps "${train[@]}" --steps 2
step train_resume_to_3 "${train[@]}" --steps 3 --resume

STEP_TIMEOUT=$((2 * STEP_TIMEOUT)) step library_checks python "$HERE/gpu_smoke.py" --device "$DEVICE" --size "$SIZE" \
    --crop "$CROP" --json "$WORK/library.json"

python - "$STEPS" "$WORK/library.json" "$OUT_JSON" "$DEVICE" "$SIZE" "$START" <<'PY'
import json, os, platform, sys, time
steps, library, out, device, size, start = sys.argv[1:]
import torch
results = {
    "device": device,
    "size": int(size),
    "host": platform.node(),
    "torch": torch.__version__,
    "cuda_available": torch.cuda.is_available(),
    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    "total_seconds": round(time.time() - float(start), 1),
    "steps": [json.loads(line) for line in open(steps)],
    "library": json.load(open(library)) if os.path.exists(library) else None,
}
os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
with open(out, "w") as f:
    json.dump(results, f, indent=2)
    f.write("\n")
print(f"wrote {out} ({results['total_seconds']} s)")
PY
