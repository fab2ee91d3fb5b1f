"""What the defaults of ``--missing`` and ``--modality-dropout`` should be, measured on synthetic OL3I
cohorts whose missingness the generator knows.

    PYTHONPATH=$PWD python benchmarks/bench_missing_quality.py missing  [--patients 1500 --seeds 0,1,2]
    PYTHONPATH=$PWD python benchmarks/bench_missing_quality.py dropout  [--patients 1500 --seeds 0,1]

``missing``: for each mechanism (MCAR, MNAR; ``--missing-rate`` of the labs, vitals, BMI and
smoker hidden) and each encoder of ``--encoders``, a tabular classifier is trained with
``missing="impute"`` and with ``missing="token"`` (same seed, same rows, token reading the
features that can be missing: ``PreparedDataset.missing_features``); the test AUC at the epoch
with the best validation AUC is printed, mean ± sd over seeds, and the paired difference.

``dropout``: a cohort with ``--no-image-rate`` of the patients without a scan; an image-tabular
classifier (ResNet-18 at 32 x 32 from scratch, FT-Mamba of width 16, ``--fusion``) is trained on
every row with modality dropout 0, 0.1, 0.25 and 0.5 (``amfmedit.train.corruption.drop_modalities``);
printed: the test AUC on the complete rows, on the rows without a scan, and on the complete rows
scored without their scan (the image dropped at test time: how much the model leans on the table
when it must).

The training loop is a small one of its own (Adam, class-balanced cross-entropy, no pretraining,
no augmentation): the stage wiring of these options comes with the stages themselves. CPU-sized:
each experiment takes a few minutes on 2 idle cores; with test splits of a few hundred rows,
differences below about 0.02 AUC are noise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amfmedit.data import load_prepared  # noqa: E402
from amfmedit.data.prepare import apply_overrides  # noqa: E402
from amfmedit.stages.prepare import prepare  # noqa: E402
from amfmedit.data.spec import load_spec  # noqa: E402
from amfmedit.models import (  # noqa: E402
    ImageEncoder,
    ImageTabularClassifier,
    UnimodalClassifier,
    build_fusion,
    build_tabular_encoder,
    losses,
)
from amfmedit.train.corruption import drop_modalities  # noqa: E402
from amfmedit.train.inputs import DeviceData  # noqa: E402

SMALL = {"ft_mamba": dict(d_block=16, d_state=4), "ft_transformer": dict(d_block=16, n_heads=4),
         "mlp": dict(d_block=64), "resnet": dict(d_block=64)}
CPU = torch.device("cpu")


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score  # scikit-learn loads only when scoring

    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def _cohort(root: Path, tag: str, args, **options) -> object:
    spec = apply_overrides(load_spec("synthetic-ol3i"), image_size=32, name=tag)
    opts = dict(patients=args.patients, seed=args.data_seed, features=args.features, prevalence=0.2) | options
    return load_prepared(prepare(spec, data_dir=root, synthetic=opts, workers=1).path)


def _class_weights(labels: np.ndarray) -> torch.Tensor:
    counts = np.bincount(labels, minlength=2).astype(float)
    return torch.tensor(len(labels) / (2 * np.maximum(counts, 1)), dtype=torch.float32)


def _fit(model, dd: DeviceData, args, seed: int, *, images: bool, dropout: float = 0.0):
    """Train; return a scorer ``(rows, drop_image) -> probabilities`` at the best validation epoch."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    gen = torch.Generator().manual_seed(seed)
    train = dd.rows("train")
    weights = _class_weights(dd.dataset.labels[train])

    def forward(rows, drop_image=False, gen=None):
        b = dd.batch(rows, images=images)
        img_p, tab_p = b.image_present, b.table_present
        if gen is not None:
            img_p, tab_p = drop_modalities(img_p, tab_p, dropout, gen)
        if drop_image:
            img_p = torch.zeros_like(img_p)
        image = b.image.float() / 255.0 if images else None
        return model(image, b.x_cont, b.x_cat, missing=b.missing, image_present=img_p, table_present=tab_p).logits

    def score(rows, drop_image=False):
        model.eval()
        with torch.no_grad():
            out = [torch.softmax(forward(rows[i:i + 256], drop_image), -1)[:, 1] for i in range(0, len(rows), 256)]
        return torch.cat(out).numpy()

    best, state = -1.0, None
    val = dd.rows("val")
    for _ in range(args.epochs):
        model.train()
        order = train[torch.randperm(len(train), generator=gen).numpy()]
        for i in range(0, len(order) - 1, args.batch_size):
            rows = order[i:i + args.batch_size]
            loss = losses.weighted_ce_loss(forward(rows, gen=gen), dd.labels[torch.from_numpy(rows)], weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
        auc = _auc(dd.dataset.labels[val], score(val))
        if auc > best:
            best, state = auc, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return score


def _fmt(values) -> str:
    v = [x for x in values if x == x]
    return f"{statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0:.3f}" if v else "-"


def missing_experiment(root: Path, args) -> None:
    print(f"{'mechanism':<9} {'encoder':<15} {'impute AUC':>14} {'token AUC':>14} {'token - impute':>15}  "
          f"(oracle of missingness alone)")
    for mech in ("mcar", "mnar"):
        ds = _cohort(root, f"q-{mech}", args, missing_rate=args.missing_rate, missing_mechanism=mech)
        oracle = ds.provenance["synthetic"]["oracle"]["missingness_only"]
        dd = DeviceData(ds, device=CPU, with_images=False)
        test = dd.rows("test")
        for name in args.encoders.split(","):
            res = {"impute": [], "token": []}
            for seed in args.seed_list:
                for mode in res:
                    torch.manual_seed(seed)
                    enc = build_tabular_encoder(name, n_cont_features=ds.schema.n_cont,
                                                cat_cardinalities=ds.schema.cardinalities, missing=mode,
                                                missing_features=ds.missing_features("train"), **SMALL[name])
                    model = UnimodalClassifier(enc, n_classes=2, modality="tabular")
                    score = _fit(model, dd, args, seed, images=False)
                    res[mode].append(_auc(ds.labels[test], score(test)))
            diff = [t - i for t, i in zip(res["token"], res["impute"])]
            print(f"{mech:<9} {name:<15} {_fmt(res['impute']):>14} {_fmt(res['token']):>14} {_fmt(diff):>15}  "
                  f"({oracle:.3f})", flush=True)


def dropout_experiment(root: Path, args) -> None:
    ds = _cohort(root, "q-noimage", args, no_image_rate=args.no_image_rate)
    dd = DeviceData(ds, device=CPU)
    test = dd.rows("test")
    complete, absent = test[ds.image_present[test]], test[~ds.image_present[test]]
    y = ds.labels
    print(f"# test rows: {len(complete)} complete, {len(absent)} without a scan; fusion {args.fusion}, {args.missing}")
    print(f"{'dropout':>8} {'complete AUC':>14} {'no-scan AUC':>14} {'complete, scan dropped':>24}")
    for rate in (0.0, 0.1, 0.25, 0.5):
        res = {"complete": [], "absent": [], "dropped": []}
        for seed in args.seed_list:
            torch.manual_seed(seed)
            img = ImageEncoder(arch="resnet18", in_channels=1)
            tab = build_tabular_encoder("ft_mamba", n_cont_features=ds.schema.n_cont,
                                        cat_cardinalities=ds.schema.cardinalities, missing=args.missing,
                                        missing_features=ds.missing_features("train"), **SMALL["ft_mamba"])
            extra = {"r_conf": 1.0, "d_out": 64} if args.fusion == "amf" else {}
            fus = build_fusion(args.fusion, d_img=img.d_out, d_tab=tab.d_out, n_classes=2, **extra)
            model = ImageTabularClassifier(img, tab, fus)
            score = _fit(model, dd, args, seed, images=True, dropout=rate)
            res["complete"].append(_auc(y[complete], score(complete)))
            res["absent"].append(_auc(y[absent], score(absent)))
            res["dropped"].append(_auc(y[complete], score(complete, drop_image=True)))
        print(f"{rate:>8.2f} {_fmt(res['complete']):>14} {_fmt(res['absent']):>14} {_fmt(res['dropped']):>24}",
              flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", choices=("missing", "dropout"))
    ap.add_argument("--patients", type=int, default=1500)
    ap.add_argument("--features", type=int, default=40)
    ap.add_argument("--data-seed", type=int, default=2022)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--encoders", default="ft_mamba,mlp")
    ap.add_argument("--missing-rate", type=float, default=0.3)
    ap.add_argument("--no-image-rate", type=float, default=0.3)
    ap.add_argument("--fusion", default="concat")
    ap.add_argument("--missing", default="token")
    args = ap.parse_args(argv)
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(2)
    print(f"# bench_missing_quality {args.experiment}: {args.patients} patients x {args.features} features, "
          f"{args.epochs} epochs, seeds {args.seeds}, data seed {args.data_seed}")
    with tempfile.TemporaryDirectory() as tmp:
        (missing_experiment if args.experiment == "missing" else dropout_experiment)(Path(tmp), args)


if __name__ == "__main__":
    main()
