"""R_conf: the measured ratio, ``--rconf auto`` and the best R_conf in hindsight, on synthetic OL3I
cohorts whose modality strengths the generator knows.

For each strength setting (``image_strength`` / ``tabular_strength`` of
:func:`amfmedit.data.synthetic.ol3i.generate_ol3i`) this prepares a small cohort, pretrains
(ResNet-18 at 32 x 32, FT-Mamba of width 16), measures R_conf with the frozen probes on the
validation split (``amfmedit rconf``), then trains AMF (trainable) once per seed for every R_conf
of a grid, for the measured value and for ``--rconf auto`` (one ``finetune`` call:
``--rconf <grid>,<measured>,auto``) and scores all of them on the test split (``evaluate``).
Printed per setting:

- true R_conf: the generator's ``oracle.image_only / oracle.tabular_only`` AUCs (the AUC each
  modality's true logit part reaches alone, in provenance);
- measured R_conf (with both probes' AUC and 95 % DeLong intervals);
- auto's choice (validation only) and the best value in hindsight (of the grid and the measured
  value, by test mean AUC);
- the test AUC (mean ± std over seeds) at measured, chosen and best.

CPU-sized: the defaults (400 patients, 1 pretraining epoch, 3 fine-tuning epochs, one seed, two
settings) take a few minutes on 2 idle cores; every number is one run on a small test split, so
differences below a few AUC points are noise. Usage:

    PYTHONPATH=$PWD python benchmarks/bench_rconf.py [--patients 400] [--epochs 3] [--seeds 2022,2023]
        [--settings "balanced (1 / 1),image-strong (2.5 / 0.4),tabular-strong (0.4 / 2.5)"]
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SETTINGS = {"balanced (1 / 1)": (1.0, 1.0), "image-strong (2.5 / 0.4)": (2.5, 0.4), "tabular-strong (0.4 / 2.5)": (0.4, 2.5)}
GRID = (0.25, 1.0, 4.0)  # wide on purpose: the strength settings put the true ratio far apart


def _mean_std(values) -> str:
    v = [x for x in values if math.isfinite(x)]
    return f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}" if v else "-"


def one_setting(root: Path, label: str, image: float, tabular: float, args) -> dict:
    from amfmedit.data.prepare import apply_overrides
    from amfmedit.stages.prepare import prepare
    from amfmedit.data.spec import load_spec
    from amfmedit.io import read_json
    from amfmedit.stages.classify import Recipe
    from amfmedit.stages.common import RunOptions
    from amfmedit.stages.evaluate import EvaluateConfig, evaluate
    from amfmedit.stages.finetune import FinetuneConfig, experiment_configs, finetune_many
    from amfmedit.stages.pretrain import PretrainConfig, pretrain
    from amfmedit.stages.rconf import RconfConfig, rconf

    name = f"rconf-bench-{image:g}-{tabular:g}".replace(".", "_")
    spec = apply_overrides(load_spec("synthetic-ol3i"), image_size=32, name=name)
    prepared = prepare(spec, data_dir=root / "data", synthetic=dict(
        patients=args.patients, seed=args.seed, features=40, prevalence=0.2,
        image_strength=image, tabular_strength=tabular))
    oracle = read_json(Path(prepared.path) / "provenance.json")["synthetic"]["oracle"]
    true_r = oracle["image_only"] / oracle["tabular_only"]
    opts = RunOptions(runs_dir=str(root / "runs"), data_dir=str(root / "data"), run=name, device="cpu", argv=["bench"])
    pretrain(name, PretrainConfig(tabular_encoder="ft_mamba", tabular_dim=16, image_arch="resnet18",
                                  epochs=args.pretrain_epochs, warmup_epochs=0, batch_size=32), opts)
    recipe = Recipe(epochs=args.epochs, lr=1e-3, patience=3)
    probes = rconf(RconfConfig(recipe=recipe, d_out=args.d_out), opts).record
    measured = round(probes["r_conf"], 4)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    base = FinetuneConfig(fusion="amf", strategy="trainable", d_out=args.d_out, seeds=seeds, recipe=recipe)
    values = [*GRID, measured] if measured not in GRID else list(GRID)
    t0 = time.perf_counter()
    results = finetune_many(experiment_configs(base, rconfs=[*values, "auto"]), opts)
    auto = next(r.search for r in results if r.search)
    ev = evaluate(EvaluateConfig(), opts)
    by_r, auto_auc = {}, None
    for g in ev.groups:
        tag = (g.get("variant") or {}).get("rconf")
        if tag == "auto":
            auto_auc = g["values"]
        elif g.get("r_conf") is not None:
            by_r[g["r_conf"]] = g["values"]
    best = max(by_r, key=lambda r: np.mean(by_r[r]))  # over the grid and the measured value, by TEST AUC
    return {"setting": label, "oracle": oracle, "true": true_r, "measured": measured, "probes": probes,
            "chosen": auto["chosen"], "candidates": auto["candidates"], "best": best, "auc": by_r,
            "auc_auto": auto_auc, "minutes": (time.perf_counter() - t0) / 60}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=400)
    ap.add_argument("--seed", type=int, default=11, help="cohort seed")
    ap.add_argument("--pretrain-epochs", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=3, help="fine-tuning / probe epochs (patience 3)")
    ap.add_argument("--seeds", default="2022")
    ap.add_argument("--d-out", type=int, default=32)
    ap.add_argument("--settings", default=",".join(list(SETTINGS)[1:]), help="comma-separated keys of SETTINGS")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="exp-bench-rconf-"))
    rows = []
    try:
        for label in args.settings.split(","):
            image, tabular = SETTINGS[label]
            rows.append(one_setting(root, label, image, tabular, args))
            r = rows[-1]
            img, tab = r["probes"]["image"], r["probes"]["tabular"]
            print(f"\n== {label}: oracle image-only {r['oracle']['image_only']:.3f}, tabular-only "
                  f"{r['oracle']['tabular_only']:.3f}, all {r['oracle']['test']:.3f} (test)")
            print(f"probes (val): image {img['metric']:.3f} [{img['interval']['low']:.3f}, {img['interval']['high']:.3f}]"
                  f", tabular {tab['metric']:.3f} [{tab['interval']['low']:.3f}, {tab['interval']['high']:.3f}]"
                  + ("  WARNING: " + "; ".join(r["probes"]["warnings"]) if r["probes"]["warnings"] else ""))
            print("auto candidates (val AUC): " + ", ".join(f"{c['r_conf']:g}: {c['val']:.3f}" for c in r["candidates"]))
            print("test AUC by R_conf: " + ", ".join(f"{k:g}: {_mean_std(v)}" for k, v in sorted(r["auc"].items())))
            print(f"({r['minutes']:.1f} min of fine-tuning)", flush=True)
        print("\n| setting | true R_conf | measured | auto (chosen) | best in hindsight | test AUC measured | "
              "test AUC auto | test AUC best |\n|---|---:|---:|---:|---:|---|---|---|")
        for r in rows:
            print(f"| {r['setting']} | {r['true']:.3f} | {r['measured']:.3f} | {r['chosen']:.3f} | {r['best']:g} | "
                  f"{_mean_std(r['auc'][r['measured']])} | {_mean_std(r['auc_auto'])} | {_mean_std(r['auc'][r['best']])} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
