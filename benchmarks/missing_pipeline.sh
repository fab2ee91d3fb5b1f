#!/usr/bin/env bash
# Token against impute on the full pipeline (contrastive pretraining -> R_conf -> fine-tuning ->
# evaluate) on a synthetic OL3I cohort whose missingness carries signal (MNAR), over seeds.
# Issue "incomplete cohorts": docs/experiments.md quotes what this prints.
#
#   benchmarks/missing_pipeline.sh [BIN] [OUT]      (BIN: .venv/bin, OUT: missing-out)
#
# Sizes: MP_PATIENTS (1000), MP_SEEDS (0-4), MP_MECHANISM (mnar), MP_RATE (0.3), MP_NO_IMAGE (0.2).
# Both modes share the cohort, the recipe, the epochs and the seeds; only --missing differs.
set -euo pipefail
BIN=${1:-.venv/bin}
OUT=${2:-missing-out}
export AMFMEDIT_DATA="$OUT/data" AMFMEDIT_RUNS="$OUT/runs"
PATIENTS=${MP_PATIENTS:-1000}
SEEDS=${MP_SEEDS:-0-4}
MECHANISM=${MP_MECHANISM:-mnar}
RATE=${MP_RATE:-0.3}
NO_IMAGE=${MP_NO_IMAGE:-0.2}
NAME=missing-$MECHANISM
start=$(date +%s)
"$BIN/amfmedit" prepare --data synthetic-ol3i --patients "$PATIENTS" --image-size 32 --features 32 \
    --prevalence 0.2 --seed 2022 --missing-rate "$RATE" --missing-mechanism "$MECHANISM" \
    --no-image-rate "$NO_IMAGE" --name "$NAME" --force
rm -rf "$OUT/runs/$NAME"
# token (the default) first, then the same pretraining with imputed values (pretrain-impute/)
"$BIN/amfmedit" pretrain --data "$NAME" --recipe cpu --epochs 20 --run "$NAME" --missing token -q
"$BIN/amfmedit" pretrain --run "$NAME" --config "$OUT/runs/$NAME/pretrain/config.toml" --missing impute -q
for mode in token impute; do
    "$BIN/amfmedit" rconf --run "$NAME" --missing "$mode" -q
    "$BIN/amfmedit" finetune --run "$NAME" --recipe cpu --fusion amf --fusion concat --strategy trainable \
        --epochs 5 --seeds "$SEEDS" --missing "$mode" -q
    "$BIN/amfmedit" finetune --run "$NAME" --recipe cpu --fusion none --modality tabular \
        --epochs 5 --seeds "$SEEDS" --missing "$mode" -q
done
"$BIN/amfmedit" evaluate --run "$NAME" --missingness-sweep 0,0.25,0.5 --image-drop 0,0.5,1
end=$(date +%s)

# token against impute for each model: the test AUC of every seed, their mean with a t interval of the paired
# per-seed difference (the same seed trains both), and the seed-averaged predictions' DeLong comparison
"$BIN/python" - "$OUT/runs/$NAME/evaluate" <<'PY'
import csv, json, math, statistics, sys
from pathlib import Path
from scipy import stats

folder = Path(sys.argv[1])
m = json.loads((folder / "metrics.json").read_text())
by = {}
for g in m["groups"]:
    mode = (g.get("variant") or {}).get("missing") or "token"
    by.setdefault(g["title"].replace(" (imputed values)", ""), {})[mode] = g
delong = {frozenset((r["a"], r["b"])): r for r in csv.DictReader(open(folder / "comparisons.csv")) if r["metric"] == "auc"}
c = m["groups"][0]["counts"]
print(f"test split: {c['tp'] + c['fn']} positives of {sum(c.values())} patients; oracle AUC {m['oracle_auc']:.3f}")
print("| model | impute: AUC, mean +- sd over seeds | token | token - impute, mean over seeds (95% t CI) "
      "| seed-averaged: impute | token | DeLong p |")
print("|---|---:|---:|---:|---:|---:|---:|")
for title, modes in by.items():
    if set(modes) != {"token", "impute"}:
        continue
    a, b = modes["impute"], modes["token"]
    va, vb = dict(zip(a["seeds"], a["values"])), dict(zip(b["seeds"], b["values"]))
    d = [vb[s] - va[s] for s in sorted(set(va) & set(vb))]
    half = stats.t.ppf(0.975, len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else math.nan
    ia, ib = a["intervals"]["auc"], b["intervals"]["auc"]
    row = delong.get(frozenset((a["title"], b["title"])))
    p = f"{float(row['p']):.2f}" if row else "n/a"
    print(f"| {title} | {a['mean']:.3f} +- {a['std']:.3f} | {b['mean']:.3f} +- {b['std']:.3f} | "
          f"{statistics.mean(d):+.3f} ({statistics.mean(d) - half:+.3f} to {statistics.mean(d) + half:+.3f}) | "
          f"{ia['estimate']:.3f} ({ia['low']:.2f}-{ia['high']:.2f}) | {ib['estimate']:.3f} ({ib['low']:.2f}-{ib['high']:.2f}) | "
          f"{p} |")
PY
echo "pipeline took $((end - start)) s; tables: $OUT/runs/$NAME/evaluate/"
