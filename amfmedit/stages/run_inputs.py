"""Run inputs: constructor arguments a fusion declares (``run_inputs``) that a stage fills from the
run or from the user, e.g. AMF's modality confidence ratio R_conf (eq. 3, from ``amfmedit rconf``).

Each input is one object in :data:`RUN_INPUTS` that knows its option, how to check a given value
against the fusion's settings, how to find the value in the run, which values a sweep or a
search on validation tries (``--rconf 0.5,1`` / ``--rconf auto``) and what part of the stage name
it takes. The fine-tuning stage asks the inputs the fusion declares; it never names one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from amfmedit.errors import UserError
from amfmedit.models import FUSIONS, amf_split, options_of
from amfmedit.stages import names
from amfmedit.train import rundir

AUTO = names.AUTO


@dataclass(frozen=True)
class Candidate:
    """One value a search on validation tries, with what the record shows of it."""

    value: float
    record: dict


class RConfInput:
    """R_conf (eq. 3): AMF's split of D_out between the modalities (eq. 6).

    Given with ``--rconf VALUE`` (one value), a list or range (a sweep, Table 5: one stage per value,
    the value in the stage name), ``--rconf auto`` (the measured value times each of
    ``rconf_multipliers``, chosen on validation with the first seed), or measured by the run's
    ``rconf`` stage on the same masked table and label fraction.
    """

    name = "r_conf"  # the constructor argument the fusion declares
    option = "--rconf"
    record_key = "rconf_auto"  # config.json's record of a search on validation
    label = "R_conf"

    # -------------------------------------------------------------------- the user's value

    @staticmethod
    def given(cfg) -> float | str | None:
        return cfg.rconf

    def searches(self, cfg) -> bool:
        return cfg.rconf == AUTO

    def validate(self, cfg, d_out: int | None) -> None:
        """The option's value, before anything is read: a positive number or ``auto``; with a
        number, eq. 6 must leave each modality a dimension of D_out."""
        if cfg.rconf == AUTO and not cfg.rconf_multipliers:
            raise UserError("--rconf auto: give at least one candidate multiplier")
        if any(not (m > 0 and math.isfinite(m)) for m in cfg.rconf_multipliers):
            raise UserError(f"rconf multipliers {list(cfg.rconf_multipliers)}: must be positive finite numbers")
        if isinstance(cfg.rconf, str) and cfg.rconf != AUTO:
            raise UserError(f"--rconf {cfg.rconf}: give a number, a list or range of numbers, or {AUTO}")
        if cfg.rconf is not None and cfg.rconf != AUTO:
            if not (cfg.rconf > 0 and math.isfinite(cfg.rconf)):
                raise UserError(f"--rconf {cfg.rconf}: R_conf is a ratio of metrics and must be a positive finite "
                                "number")
            self.check(float(cfg.rconf), d_out)

    @staticmethod
    def check(value: float, d_out: int | None) -> None:
        """Eq. 6 must leave each modality at least one of D_out's dimensions."""
        if d_out is None:
            return
        try:
            amf_split(d_out, value)
        except ValueError:
            raise UserError(f"--rconf {value}: with D_out {d_out}, eq. 6 leaves a modality no dimension; "
                            f"use R_conf between {1 / (d_out - 1):.4g} and {d_out - 1:g} or a larger --d-out") from None

    @staticmethod
    def with_value(cfg, value: float):
        """``cfg`` as the stage trained it (its config.toml repeats the value)."""
        return replace(cfg, rconf=value)

    def name_part(self, cfg) -> dict[str, Any]:
        """What the input adds to the stage name: ``auto``, or the value of a sweep member."""
        if cfg.rconf == AUTO or cfg.rconf_in_name:
            return {"rconf": cfg.rconf}
        return {}

    # ----------------------------------------------------------------------- from the run

    def resolve(self, cfg, run: rundir.Run) -> float:
        """``--rconf`` or the run's ``rconf`` stage (on the same masked table and label fraction); for
        ``--rconf auto`` the measured value the candidates centre on."""
        if cfg.rconf is not None and cfg.rconf != AUTO:
            return float(cfg.rconf)
        missing = cfg.missing if cfg.missing_in_name else None  # probes of the run's second pretraining
        value = names.read_rconf(run, cfg.mask_features, cfg.train_fraction, missing)
        if value is None:
            args = " ".join([*(f"--mask-features {n}" for n in cfg.mask_features),
                             *([f"--train-fraction {cfg.train_fraction:g}"] if cfg.train_fraction < 1 else []),
                             *([f"--missing {missing}"] if missing else [])])
            stage = names.rconf_stage(cfg.mask_features, cfg.train_fraction, missing)
            raise UserError(
                f"--fusion {cfg.fusion}{' --rconf auto' if cfg.rconf == AUTO else ''} needs R_conf and run "
                f"{run.name} has no finished {stage}/ stage; run `amfmedit rconf{' ' + args if args else ''}` first"
                + ("" if cfg.rconf == AUTO else " or pass --rconf VALUE")
            )
        return value

    # ----------------------------------------------------------------- sweeps and searches

    def sweep(self, base, values) -> list:
        """``base`` once per value (numbers and/or ``auto``); with several, numbers go in the stage names."""
        if not values:
            return [base]
        values = list(dict.fromkeys(values))
        return [replace(base, rconf=v, rconf_in_name=len(values) > 1 and v != AUTO) for v in values]

    def candidates(self, cfg, measured: float, d_out: int | None) -> list[Candidate]:
        """``--rconf auto``'s candidates: ``measured x multiplier`` (4 decimals), the measured value first.

        Eq. 6 turns R_conf into integer dimensions (L_img, L_tab), so candidates with the same split
        are one architecture: only the one closest to the measured value is kept. Candidates that
        leave a modality no dimension are dropped.
        """
        return [Candidate(c["r_conf"], c) for c in rconf_candidates(measured, cfg.rconf_multipliers, d_out)]

    def search_record(self, cfg, measured: float, record: dict) -> dict:
        return {"measured": measured, "multipliers": list(cfg.rconf_multipliers), **record}

    def sub_folder(self, value: float) -> str:
        """The folder of one candidate inside the search stage."""
        return names.variant_tag(rconf=value).lstrip("-")

    def search_stage(self, prefix: str, mask) -> str:
        return names.rconf_search_stage(prefix, mask)


def rconf_candidates(measured: float, multipliers, d_out: int | None) -> list[dict]:
    """``--rconf auto``'s candidate records (see :meth:`RConfInput.candidates`)."""
    order = sorted(multipliers, key=lambda m: (abs(math.log(m)), m))
    out, splits = [], set()
    for m in order:
        r = round(measured * m, 4)
        try:
            split = amf_split(d_out, r) if d_out is not None else (r,)
        except ValueError:
            continue
        if split in splits:
            continue
        splits.add(split)
        out.append({"multiplier": float(m), "r_conf": r, **({"L_img": split[0], "L_tab": split[1]} if d_out else {})})
    if not out:
        raise UserError(f"--rconf auto: no candidate around the measured R_conf {measured:.4g} gives each modality "
                        f"a dimension of D_out {d_out}; use a larger --d-out or pass --rconf VALUE")
    return out


#: How a stage fills each run input a fusion may declare (``run_inputs``).
RUN_INPUTS: dict[str, RConfInput] = {"r_conf": RConfInput()}


def declared(fusion: str) -> list[RConfInput]:
    """The run inputs ``fusion`` declares, each with its resolver (none for a supervised baseline)."""
    if fusion == names.NO_FUSION:
        return []
    wanted = FUSIONS[fusion].run_inputs
    unknown = [n for n in wanted if n not in RUN_INPUTS]
    if unknown:
        raise ValueError(f"fusion {fusion} declares run inputs no stage provides: {unknown}; "
                         f"add a resolver to amfmedit.stages.run_inputs.RUN_INPUTS")
    return [RUN_INPUTS[n] for n in wanted]


def fusions_with(name: str) -> list[str]:
    """The registered fusions that declare run input ``name``."""
    return [k for k, c in FUSIONS.items() if name in c.run_inputs]


def fusion_d_out(cfg) -> int | None:
    """D_out of ``cfg``'s fusion: ``--d-out`` or the fusion's default (None when it has no such setting)."""
    return cfg.d_out or options_of(FUSIONS[cfg.fusion]).get("d_out")
