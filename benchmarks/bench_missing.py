"""Cost of reading missing values: ``missing="token"`` against ``"impute"``, epoch time at 424 features.

    PYTHONPATH=$PWD python benchmarks/bench_missing.py                      # FT-Mamba, MLP, ResNet; 512 rows
    PYTHONPATH=$PWD python benchmarks/bench_missing.py --encoders ft_transformer --rows 256
    PYTHONPATH=$PWD python benchmarks/bench_missing.py --encoders ft_mamba --rows 5227 --batch-size 128

For each tabular encoder (as ``amfmedit`` builds it by default: FT-Mamba and FT-Transformer of
width 64, MLP and ResNet of width 256) the two settings train a tabular classifier
(:class:`~amfmedit.models.UnimodalClassifier`, Adam) for one epoch of ``--rows`` random rows of
``--features`` features (two of them categorical, as synthetic OL3I's gender and smoker), of
which ``--missing-features`` can be missing (33: OL3I's labs and vitals, BMI and smoker; its
code counts are never missing) and are so in ``--missing-rate`` of the rows, at random; the
token encoders read those features' missingness (``missing_features``), the mask is passed to
both settings (the imputing encoder ignores it). ``--missing-features 0`` lets every feature be
missing (the widest MLP/ResNet input: one indicator column per feature). The table alone is timed: an image encoder would add the same time to both and hide the
difference. The two settings alternate within every round (token first in odd rounds, impute
first in even ones) so that a busy machine slows both alike; each figure is the median of
``--repeats`` rounds after a warm-up epoch, and the ratio token / impute is printed per encoder.
FT-Transformer is left out by default: at 424 tokens its attention maps alone hold about
0.7 GB per layer at batch 128, minutes per epoch on a 2-core CPU (name it with --encoders).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amfmedit.models import TABULAR_ENCODERS, UnimodalClassifier, build_tabular_encoder, losses  # noqa: E402

N_CAT, CARD = 2, 3  # gender and smoker: two categories each plus the missing code


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _columns(features: int, k: int) -> list[int]:
    """The features that can be missing: the last ``k`` continuous ones and both categorical ones
    (all of them for k = 0)."""
    if k <= 0:
        return list(range(features))
    n_cont = features - N_CAT
    return list(range(n_cont - (k - N_CAT), n_cont)) + list(range(n_cont, features))


def _data(rows: int, features: int, columns: list[int], missing_rate: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n_cont = features - N_CAT
    x_cont = torch.randn(rows, n_cont, generator=g)
    missing = torch.zeros(rows, features, dtype=torch.bool)
    missing[:, columns] = torch.rand(rows, len(columns), generator=g) < missing_rate
    x_cat = torch.randint(1, CARD, (rows, N_CAT), generator=g)
    x_cat = torch.where(missing[:, n_cont:], 0, x_cat)
    x_cont = torch.where(missing[:, :n_cont], 0.0, x_cont)  # the imputed value of a missing cell
    y = torch.randint(0, 2, (rows,), generator=g)
    return x_cont, x_cat, missing, y


def _model(name: str, mode: str, features: int, columns: list[int]):
    torch.manual_seed(0)
    enc = build_tabular_encoder(name, n_cont_features=features - N_CAT, cat_cardinalities=[CARD] * N_CAT,
                                missing=mode, missing_features=columns)
    model = UnimodalClassifier(enc, n_classes=2, modality="tabular")
    return model.train(), torch.optim.Adam(model.parameters(), lr=1e-4)


def _epoch(model, opt, data, batch_size: int) -> float:
    x_cont, x_cat, missing, y = data
    t0 = time.perf_counter()
    for s in range(0, len(y), batch_size):
        sl = slice(s, s + batch_size)
        loss = losses.ce_loss(model(x_cont=x_cont[sl], x_cat=x_cat[sl], missing=missing[sl]).logits, y[sl])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoders", default="ft_mamba,mlp,resnet",
                    help=f"comma-separated, of {', '.join(TABULAR_ENCODERS)}")
    ap.add_argument("--features", type=int, default=424)
    ap.add_argument("--rows", type=int, default=512, help="rows per epoch (OL3I's training split: 5227)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--missing-features", type=int, default=33, help="features that can be missing (0: all)")
    ap.add_argument("--missing-rate", type=float, default=0.3, help="share of the rows missing each of them")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    one, five, _ = os.getloadavg()
    print(f"# bench_missing {date.today().isoformat()} commit {_commit()}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
          f"load average {one:.2f} (5 min {five:.2f})")
    columns = _columns(args.features, args.missing_features)
    print(f"# {args.rows} rows x {args.features} features ({N_CAT} categorical), batch {args.batch_size}; "
          f"{len(columns)} features can be missing, each in {args.missing_rate:.0%} of the rows; "
          f"median of {args.repeats} interleaved rounds after a warm-up epoch")
    data = _data(args.rows, args.features, columns, args.missing_rate)
    print(f"{'encoder':<16} {'impute s/epoch':>15} {'token s/epoch':>14} {'token / impute':>15}")
    for name in args.encoders.split(","):
        runs = {mode: _model(name, mode, args.features, columns) for mode in ("impute", "token")}
        times: dict[str, list[float]] = {"impute": [], "token": []}
        for mode in runs:
            _epoch(*runs[mode], data, args.batch_size)  # warm-up
        for r in range(args.repeats):
            for mode in (("token", "impute") if r % 2 == 0 else ("impute", "token")):
                times[mode].append(_epoch(*runs[mode], data, args.batch_size))
        imp, tok = statistics.median(times["impute"]), statistics.median(times["token"])
        print(f"{name:<16} {imp:>15.3f} {tok:>14.3f} {tok / imp:>15.3f}", flush=True)


if __name__ == "__main__":
    main()
