"""Every stage-folder name of a run, built and parsed in one place.

```
pretrain/                                  PRETRAIN
pretrain-<missing>/                        encoders pretrained reading missing values otherwise than pretrain/'s
rconf[<variant>][-<mask>]/                 RCONF (probes on a masked table carry the mask tag)
finetune-<fusion>-<strategy>[<variant>]-seed<N>[-<mask>]/
finetune-<fusion>-<strategy>[<variant>]-lrsearch[-<mask>]/     the learning-rate search of the first seed
finetune-<fusion>-<strategy>-rconfauto[<variant>]-rconfsearch[-<mask>]/   ``--rconf auto``'s candidates
supervised-<modality>[<variant>]-seed<N>[-<mask>]/    baselines (``--fusion none``)
evaluate/                                  EVALUATE
explain/ig-<stage>/, explain/gradcam-<stage>/
```

The mask tag (incomplete tabular data, §4.2.4) is ``mask-<names joined by +>`` or
``mask<K>-<sha1 prefix>`` for long lists. Fusion names and strategies come from the model
registries, so a newly registered fusion gets its folders without a change here.

The variant (the experiments of ``docs/experiments.md``) is empty for an ordinary stage, so
today's names stay as they are; otherwise it is, in this order:

``-enc-<encoder>``       a supervised tabular baseline of an encoder sweep (Table 1)
``-rconf<value>``        a member of an R_conf sweep (Table 5), ``-rconfauto`` for ``--rconf auto``
``-off-<loss>[+<loss>]`` auxiliary losses switched off (weight 0; Table 6's ablation rows)
``-frac<fraction>``      trained on a stratified fraction (< 1) of the training rows (learning curves)
``-impute`` / ``-token``  a model reading missing values otherwise than the run's ``pretrain/`` encoders
                         (``--missing``; a fusion's encoders come from ``pretrain-<missing>/``;
                         docs/missing-data.md)

e.g. ``finetune-amf-trainable-rconf0.95-seed2022``, ``finetune-amf-trainable-off-leakage-frac0.1-seed2023``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Sequence

from amfmedit.errors import UserError
from amfmedit.io import read_json
from amfmedit.models import MISSING_MODES, STRATEGIES
from amfmedit.train import rundir

PRETRAIN = "pretrain"
RCONF = "rconf"
EVALUATE = "evaluate"
EXPLAIN = "explain"
NO_FUSION = "none"  # ``--fusion none``: a supervised single-modality baseline
MODALITIES = ("image", "tabular")
MASK_KEY = "mask"  # config.json key holding {"features": [...], "fill": {...}, "rule": ...}
IG_PREFIX, CAM_PREFIX = "ig-", "gradcam-"
# files that one stage writes and others read
RCONF_FILE = "rconf.json"  # rconf/: both probes' metrics, R_conf, L_img / L_tab
EVAL_METRICS_FILE = "metrics.json"  # evaluate/: every stage's and group's test metrics
RESULTS_FILE = "results.md"  # evaluate/: the tables a person reads

AUTO = "auto"  # ``--rconf auto``: R_conf chosen on validation (amfmedit.stages.finetune)
#: the keys of a stage's variant, as :func:`parse_stage` returns them (None / () when absent)
VARIANT_KEYS = ("encoder", "rconf", "off", "fraction", "missing")
_MASK_SUFFIX = re.compile(r"-(mask(?:-[A-Za-z0-9_.+]+|\d+-[0-9a-f]{8}))$")
_SAFE = re.compile(r"^[A-Za-z0-9_.]+$")
_MAX_READABLE = 40  # longer tags are replaced by a count and a hash


# ----------------------------------------------------------------------------------------------
# masks
# ----------------------------------------------------------------------------------------------


def mask_tag(names: Sequence[str]) -> str:
    """Stage-name suffix for a masked feature set: ``mask-age_at_scan`` or ``mask12-<hash>``."""
    names = list(names)
    readable = "mask-" + "+".join(names)
    if all(_SAFE.match(n) for n in names) and len(readable) <= _MAX_READABLE:
        return readable
    digest = hashlib.sha1("\n".join(sorted(names)).encode()).hexdigest()[:8]
    return f"mask{len(names)}-{digest}"


def masked_stage_name(stage: str, names: Sequence[str] | None) -> str:
    """``stage`` with the mask suffix of ``names`` (unchanged when nothing is masked)."""
    return f"{stage}-{mask_tag(names)}" if names else stage


def split_mask_suffix(stage: str) -> tuple[str, str | None]:
    """``finetune-amf-frozen-seed2022-mask-age`` -> (``finetune-amf-frozen-seed2022``, ``mask-age``)."""
    m = _MASK_SUFFIX.search(stage)
    if not m:
        return stage, None
    return stage[: m.start()], m.group(1)


def stage_mask(stage_dir: str | Path) -> list[str]:
    """The feature names a stage was trained with masked (its config.json), [] for complete data."""
    path = Path(stage_dir) / rundir.CONFIG_FILE
    if not path.is_file():
        return []
    rec = read_json(path).get(MASK_KEY) or {}
    return list(rec.get("features") or [])


# ----------------------------------------------------------------------------------------------
# classifiers
# ----------------------------------------------------------------------------------------------


def _number(value: float) -> str:
    """A number as a name part: ``0.95`` -> ``0.95``, ``1.0`` -> ``1``, ``1e-3`` -> ``0.001``."""
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    if float(text) != float(value):
        raise UserError(f"{value!r}: a value in a stage name has at most 6 decimals; round it (e.g. {text})")
    return text


def variant_tag(*, encoder: str | None = None, rconf: float | str | None = None, off: Sequence[str] = (),
                fraction: float | None = None, missing: str | None = None) -> str:
    """The variant part of a stage name ("" for an ordinary stage); see the module docstring."""
    parts = []
    if encoder is not None:
        parts.append(f"enc-{encoder}")
    if rconf is not None:
        parts.append("rconf" + (AUTO if rconf == AUTO else _number(rconf)))
    if off:
        parts.append("off-" + "+".join(sorted(off)))
    if fraction is not None and fraction < 1:
        parts.append("frac" + _number(fraction))
    if missing is not None:
        parts.append(missing)
    return "".join("-" + p for p in parts)


def classifier_prefix(fusion: str, strategy: str, modality: str | None = None, **variant) -> str:
    """``finetune-<fusion>-<strategy>``, or ``supervised-<modality>`` for ``fusion == NO_FUSION``,
    followed by the :func:`variant_tag` of ``variant`` (encoder, rconf, off, fraction, missing)."""
    base = f"supervised-{modality}" if fusion == NO_FUSION else f"finetune-{fusion}-{strategy}"
    return base + variant_tag(**variant)


def seed_stage(prefix: str, seed: int, mask: Sequence[str] = ()) -> str:
    return masked_stage_name(f"{prefix}-seed{seed}", mask)


def lr_search_stage(prefix: str, mask: Sequence[str] = ()) -> str:
    return masked_stage_name(f"{prefix}-lrsearch", mask)


def stage_family(lock_name: str) -> str:
    """The folders a stage lock guards, for messages: a combination's lock
    (:func:`lr_search_stage`) guards its learning-rate search and every seed, shown as
    ``<prefix>-seed*``; any other lock guards the folder of its own name."""
    return re.sub(r"-lrsearch(?=-|$)", "-seed*", lock_name, count=1)


def rconf_search_stage(prefix: str, mask: Sequence[str] = ()) -> str:
    """Where ``--rconf auto`` trains its candidates with the first seed (one sub-folder each)."""
    return masked_stage_name(f"{prefix}-rconfsearch", mask)


def rconf_stage(mask: Sequence[str] = (), fraction: float | None = None, missing: str | None = None) -> str:
    """``rconf[-frac<f>][-<missing>][-<mask>]``: the probes (on a fraction of the training labels; on the
    encoders of ``pretrain-<missing>/``)."""
    return masked_stage_name(RCONF + variant_tag(fraction=fraction, missing=missing), mask)


def pretrain_stage(missing: str | None = None) -> str:
    """``pretrain/``, or ``pretrain-<missing>/``: the run's second pretraining, reading missing values
    the other way (``pretrain --missing``)."""
    return PRETRAIN if missing is None else f"{PRETRAIN}-{missing}"


_NUM = r"\d+(?:\.\d+)?"


def _stage_re() -> re.Pattern:
    from amfmedit.models import FUSIONS, TABULAR_ENCODERS  # as registered now (a plugin fusion has folders too)

    fusions = "|".join(sorted(map(re.escape, FUSIONS), key=len, reverse=True))
    strategies = "|".join(map(re.escape, STRATEGIES))
    modalities = "|".join(MODALITIES)
    encoders = "|".join(sorted(map(re.escape, TABULAR_ENCODERS), key=len, reverse=True))
    losses = r"[A-Za-z0-9_]+(?:\+[A-Za-z0-9_]+)*"
    modes = "|".join(map(re.escape, MISSING_MODES))
    return re.compile(rf"^(?:finetune-(?P<fusion>{fusions})-(?P<strategy>{strategies})"
                      rf"|supervised-(?P<modality>{modalities}))"
                      rf"(?:-enc-(?P<encoder>{encoders}))?(?:-rconf(?P<rconf>{_NUM}|{AUTO}))?"
                      rf"(?:-off-(?P<off>{losses}))?(?:-frac(?P<fraction>{_NUM}))?(?:-(?P<missing>{modes}))?"
                      rf"-seed(?P<seed>\d+)$")


def parse_stage(name: str) -> dict | None:
    """``finetune-amf-trainable[-<variant>]-seed2022[-mask-age]`` -> its parts; None otherwise.

    Keys: fusion, strategy, modality, seed, mask and the variant (:data:`VARIANT_KEYS`):
    encoder (str or None), rconf (float, ``AUTO`` or None), off (tuple of loss names, () when
    none), fraction (float or None) and missing (``--missing`` of a model that differs from the
    run's ``pretrain/``, else None). ``fusion`` is ``NO_FUSION`` and ``strategy`` "trainable"
    for a supervised baseline; ``mask`` is the mask tag or None.
    """
    base, tag = split_mask_suffix(name)
    m = _stage_re().match(base)
    if not m:
        return None
    d = m.groupdict()
    rconf = d["rconf"] if d["rconf"] in (None, AUTO) else float(d["rconf"])
    return {"fusion": d["fusion"] or NO_FUSION, "strategy": d["strategy"] or "trainable",
            "modality": d["modality"], "seed": int(d["seed"]), "mask": tag,
            "encoder": d["encoder"], "rconf": rconf, "off": tuple(d["off"].split("+")) if d["off"] else (),
            "fraction": float(d["fraction"]) if d["fraction"] else None, "missing": d["missing"]}


def variant_of(info: dict) -> tuple:
    """The variant of a :func:`parse_stage` record as a hashable tuple (all None / () for an ordinary stage)."""
    return tuple(info.get(k) for k in VARIANT_KEYS)


def is_variant(info: dict) -> bool:
    """True for a stage (or evaluate group) of an experiment: a sweep member, ablation row or label fraction."""
    return any(info.get(k) for k in VARIANT_KEYS)


def classifier_stages(run: rundir.Run) -> dict[str, dict]:
    """Finished classifier stages of ``run`` (masked ones included) -> :func:`parse_stage` record."""
    out = {}
    for name in run.complete_stages():
        info = parse_stage(name)
        if info is not None:
            out[name] = info
    return out


# ----------------------------------------------------------------------------------------------
# explanations
# ----------------------------------------------------------------------------------------------


def explain_dir(run: rundir.Run) -> Path:
    return run.root / EXPLAIN


def ig_folder(run: rundir.Run, stage: str) -> Path:
    return explain_dir(run) / f"{IG_PREFIX}{stage}"


def cam_folder(run: rundir.Run, stage: str) -> Path:
    return explain_dir(run) / f"{CAM_PREFIX}{stage}"


def _finished(run: rundir.Run, prefix: str) -> dict[str, Path]:
    root = explain_dir(run)
    if not root.is_dir():
        return {}
    found = [(p.stat().st_mtime, p.name[len(prefix):], p) for p in root.iterdir()
             if p.is_dir() and p.name.startswith(prefix) and (p / rundir.MARKER).is_file()]
    return {stage: p for _, stage, p in sorted(found)}


def ig_reports(run: rundir.Run) -> dict[str, Path]:
    """Finished IG reports of a run: explained stage -> ``explain/ig-<stage>/`` (oldest first)."""
    return _finished(run, IG_PREFIX)


def cam_reports(run: rundir.Run) -> dict[str, Path]:
    """Finished Grad-CAM reports: explained stage -> ``explain/gradcam-<stage>/`` (oldest first)."""
    return _finished(run, CAM_PREFIX)


def read_rconf(run: rundir.Run, mask_features=(), fraction: float = 1.0, missing: str | None = None) -> float | None:
    """R_conf recorded by ``amfmedit rconf`` in this run (on data with ``mask_features`` masked, probes
    trained on ``fraction`` of the training labels, on the encoders of ``pretrain-<missing>/``), or None."""
    stage = rconf_stage(mask_features, fraction, missing)
    path = run.stage(stage) / RCONF_FILE
    if not run.is_complete(stage) or not path.is_file():
        return None
    return float(read_json(path)["r_conf"])
