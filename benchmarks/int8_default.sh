#!/usr/bin/env bash
# The INT8 record of the default model (issue 10): FP32 / FP16 / INT8 / INT8 with accuracy
# control, the machine's peak MatMul throughput and the report (md, html, png, json).
# Run from the repository root; bundles and evaluation results go to $WORK, the record to
# benchmarks/int8_default/. Usage: benchmarks/int8_default.sh [--sequences N]
set -euo pipefail
WORK=${WORK:-/tmp/int8_default}
DATA=${DATA:-/work/data/synth_eval}
OUT=benchmarks/int8_default
PY=${PY:-.venv/bin/python}
E="$PY -m edgetrack.cli"
mkdir -p "$WORK" "$OUT"
if [ "${1:-}" = "--sequences" ]; then  # a subset of the eval split (the first N sequences)
  SUB="$WORK/synth_eval_$2"; rm -rf "$SUB"; mkdir -p "$SUB"
  for s in $(ls -d "$DATA"/*/ | head -n "$2"); do ln -s "$(realpath "$s")" "$SUB/$(basename "$s")"; done
  DATA=$SUB
fi
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }
lscpu > "$OUT/lscpu.txt"

stamp "FP32: the default model's bundle (built by python -m edgetrack.default_model)"
FP32=$($PY -m edgetrack.default_model | sed -n 's/^default model bundle: //p')
rm -rf "$WORK/mini-fp32" && cp -r "$FP32" "$WORK/mini-fp32"   # a copy: the report records into bundle.json
CKPT=models/$($PY -c "import json; m=json.load(open('models/default.json'))['model']; print(json.load(open(f'models/{m}.json'))['file'])")
# with the default bundle's conversion options (models/default.json "convert")
VIEWS=$($PY -m edgetrack.default_model --convert-args)
stamp "FP16 bundle from $CKPT ($VIEWS)"
$E convert "$CKPT" -o "$WORK/mini-fp16" --precision fp16 $VIEWS
stamp "INT8 (NNCF defaults, 16 synthetic train-split calibration sequences)"
time $E quantize "$WORK/mini-fp32" -o "$WORK/mini-int8"
stamp "INT8 with accuracy control (--max-drop 0.005, 8 x 100 frames of eval-split seed-1 sequences)"
time $E quantize "$WORK/mini-fp32" -o "$WORK/mini-int8-ac" --max-drop 0.005
stamp "peak and bench"
$E bench --peak -m "$WORK/mini-fp32" -m "$WORK/mini-fp16" -m "$WORK/mini-int8" -m "$WORK/mini-int8-ac" \
  --no-torch --json "$OUT/bench_peak.json" | tee "$OUT/bench_peak.txt"
stamp "report on $DATA"
rm -rf "$WORK/report"
time $E report -m "$WORK/mini-fp32" -m "$WORK/mini-fp16" -m "$WORK/mini-int8" -m "$WORK/mini-int8-ac" \
  --dataset "folder:$DATA" --out "$WORK/report" --workers 1 > "$WORK/report.stdout"
cp "$WORK/report/report.md" "$WORK/report/report.html" "$WORK/report/report.png" "$WORK/report/report.json" "$OUT/"
for b in mini-int8 mini-int8-ac; do cp "$WORK/$b/bundle.json" "$OUT/$b.bundle.json"; done
stamp "done"
