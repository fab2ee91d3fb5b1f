"""The reporting checklists a journal asks for, filled from the run: TRIPOD+AI (2024) and CLAIM (2024).

Item numbers follow the published checklists: TRIPOD+AI, Collins et al., BMJ 2024;385:e078378 (27
items, 52 sub-items); CLAIM 2024 Update, Tejani et al., Radiol Artif Intell 2024;6(4):e240300 (44
items). Topics are paraphrased; the checklists' own wording is the authority.

An item the run can answer is filled from the run's own files (:class:`~amfmedit.stages.runfacts.
RunFacts`), and names them; every other item is a marked placeholder, ``[TO FILL: <checklist>
<number>]``, with what the author has to supply. Where a file an item reads is missing, the item
falls back to its placeholder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from amfmedit.stages import names
from amfmedit.stages.runfacts import RunFacts, finite

PLACEHOLDER = "[TO FILL: {guideline} {number}]"
TRIPOD, CLAIM = "TRIPOD+AI", "CLAIM 2024"


@dataclass(frozen=True)
class Item:
    guideline: str
    number: str
    topic: str
    fill: Callable[[RunFacts], str | None] | None = None  # None: nothing in a run can answer it
    sources: tuple[str, ...] = ()  # the run files ``fill`` reads (``<data>/`` = the prepared dataset; globs allowed)
    hint: str = ""  # what the author supplies when it is a placeholder

    @property
    def auto(self) -> bool:
        return self.fill is not None


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _iv(d: dict | None, digits: int = 3) -> str:
    if not d or not finite(d.get("estimate")):
        return "n/a"
    if finite(d.get("low")) and finite(d.get("high")):
        return f"{d['estimate']:.{digits}f} (95% CI {d['low']:.{digits}f}-{d['high']:.{digits}f})"
    return f"{d['estimate']:.{digits}f}"


# ---------------------------------------------------------------------------------------------- fillers


def source_of(f: RunFacts) -> str | None:
    p = f.provenance
    if not p:
        return None
    spec = p.get("spec") or {}
    parts = [f"dataset `{p.get('name')}` read with the `{spec.get('reader')}` reader from spec "
             f"`{p.get('spec_file') or spec.get('name')}`"]
    if spec.get("description"):
        parts.append(spec["description"])
    if f.source.get("citation"):
        parts.append(f"source: {f.source['citation']}")
    syn = p.get("synthetic")
    if syn:
        parts.append(f"synthetic ({syn.get('generator')}, seed {syn.get('seed')})")
    like = p.get("like")
    if like:
        parts.append(f"prepared like `{like.get('dataset')}`")
    return "; ".join(parts)


def _given(key: str) -> Callable[[RunFacts], str | None]:
    def fill(f: RunFacts) -> str | None:
        return f.source.get(key) or None
    return fill


def eligibility(f: RunFacts) -> str | None:
    p = f.provenance
    if not p:
        return None
    rows = p.get("rows") or {}
    dropped = rows.get("dropped") or {}
    text = (f"{rows.get('kept')} of {rows.get('read')} rows kept" + (": dropped " + ", ".join(
        f"{v} ({k})" for k, v in dropped.items()) if dropped else ", none dropped"))
    return (f.source["eligibility"] + "; " + text) if f.source.get("eligibility") else text


def preprocessing(f: RunFacts) -> str | None:
    s = f.schema
    if not s:
        return None
    img = s["image"]
    n_cont = sum(x["kind"] == "continuous" for x in s["features"])
    window = f", HU window {img['window'][0]:g} to {img['window'][1]:g} to [0, 1]" if img.get("window") else ""
    return (f"{n_cont} continuous features median-imputed and z-scored, {len(s['features']) - n_cont} categorical "
            "coded (0 = missing or unseen), statistics fitted on the training split only; images "
            f"{img['modality']}{window}, resized to {img['channels']} x {img['height']} x {img['width']} and stored "
            "as 8-bit (amfmedit prepare)")


def outcome(f: RunFacts) -> str | None:
    s = f.schema
    if not s:
        return None
    text = f"column `{s.get('label_source')}`, classes {', '.join(map(str, s['class_names']))} ({s['task']})"
    return text + (f"; {f.source['outcome']}" if f.source.get("outcome") else "")


def predictors(f: RunFacts) -> str | None:
    s, p = f.schema, f.provenance
    if not s or not p:
        return None
    table = (p.get("spec") or {}).get("table") or {}
    chosen = "the listed columns" if table.get("features") else "every column not excluded"
    groups = sorted({x.get("group") for x in s["features"] if x.get("group")})
    return (f"{len(s['features'])} tabular features ({chosen}; no data-driven pre-selection)"
            + (f" in groups {', '.join(groups)}" if groups else "") + f" and one {s['image']['modality']} image per row")


def sample_size(f: RunFacts) -> str | None:
    p = f.provenance
    if not p or not p.get("counts"):
        return None
    parts = [f"{s} {c['rows']} rows (" + ", ".join(f"class {k}: {v}" for k, v in c["classes"].items()) + ")"
             for s, c in p["counts"].items()]
    return "; ".join(parts) + "; no sample-size calculation was made by amfmedit"


def missing(f: RunFacts) -> str | None:
    s = f.schema
    if not s:
        return None
    fr = [(x["name"], x.get("missing_fraction_train", 0.0)) for x in s["features"]]
    some = [(n, m) for n, m in fr if m > 0]
    worst = max(some, key=lambda t: t[1]) if some else None
    return (f"{len(some)} of {len(fr)} features have missing values in the training split"
            + (f" (most: {worst[0]}, {_pct(worst[1])})" if worst else "") + "; continuous ones imputed with the "
            "training median, categorical ones coded as missing; the missing mask is kept (missing.npy)")


def partitions(f: RunFacts) -> str | None:
    d, p = f.disjointness(), f.provenance
    if not d or not p:
        return None
    spec = p.get("spec") or {}
    table, split = spec.get("table") or {}, spec.get("split") or {}
    how = (f"split column `{table['split']}` of the source" if table.get("split") else
           f"random split {split.get('fractions')} (seed {split.get('seed')}, stratified: {split.get('stratify')})")
    return (f"{how}: " + ", ".join(f"{k} {v}" for k, v in d["per_split"].items())
            + f"; disjoint at the level of the id column: {d['ids']} ids, {d['in_several_splits']} in more than one split")


def disjointness(f: RunFacts) -> str | None:
    d = f.disjointness()
    if not d:
        return None
    return (f"row (id) level, checked: {d['ids']} ids over {d['rows']} rows, {d['in_several_splits']} ids in more than "
            "one split; several ids of one patient cannot be seen in the prepared table")


def _fine_tuned(f: RunFacts) -> list[tuple[str, dict]]:
    return [(s, f.config(s) or {}) for s, i in f.classifiers.items() if not i.get("baseline")]


def models(f: RunFacts) -> str | None:
    pre = (f.config(names.PRETRAIN) or {}).get("config")
    kinds = sorted({(c.get("config") or {}).get("fusion") or "?" for _, c in _fine_tuned(f)})
    base = sorted({i["baseline"] for i in f.classifiers.values() if i.get("baseline")})
    if not pre and not kinds and not base:
        return None
    parts = []
    if pre:
        parts.append(f"image encoder {pre.get('image_arch')} and tabular encoder {pre.get('tabular_encoder')} "
                     f"(width {pre.get('tabular_dim')}), contrastively pretrained (ITC, {pre.get('epochs')} epochs)")
    if kinds:
        parts.append("fine-tuned fusions: " + ", ".join(kinds))
    if base:
        parts.append("scikit-learn baselines: " + ", ".join(base))
    return "; ".join(parts)


def training(f: RunFacts) -> str | None:
    recipes = [(c.get("config") or {}).get("recipe") or {} for _, c in _fine_tuned(f)]
    if not recipes:
        return None
    r = recipes[0]
    return (f"{r.get('optimizer')} at a constant learning rate chosen from {r.get('lrs')} on validation with the first "
            f"seed, batch {r.get('batch_size')}, at most {r.get('epochs')} epochs, early stopping after "
            f"{r.get('patience')} epochs without improvement; seeds: "
            + ", ".join(sorted({str(c.get('seed')) for _, c in _fine_tuned(f)})))


def selection(f: RunFacts) -> str | None:
    parts = []
    for p in f.glob("*-lrsearch/selection.json"):
        rec = f.json(str(p.relative_to(f.root))) or {}
        parts.append(f"{p.parent.name}: lr {rec.get('chosen_lr')} (validation {rec.get('val')})")
    for p in f.glob("baseline-*-search/selection.json"):
        rec = f.json(str(p.relative_to(f.root))) or {}
        parts.append(f"{p.parent.name}: {rec.get('chosen')} of {len(rec.get('candidates') or [])} candidates")
    if not parts and not f.classifiers:
        return None
    return ("the epoch with the best validation headline metric of each training; "
            + ("; ".join(parts) if parts else "learning rates given"))


def imbalance(f: RunFacts) -> str | None:
    recipes = {(tuple(((c.get("config") or {}).get("recipe") or {}).get("sampler_weights") or ()),
                tuple(((c.get("config") or {}).get("recipe") or {}).get("loss_weights") or ()))
               for _, c in _fine_tuned(f)}
    if not recipes:
        return None
    parts = [f"class-balanced sampling {list(s) or 'none'} and class weights in the loss {list(w) or 'none'}"
             for s, w in sorted(recipes)]
    return "; ".join(parts) + "; probabilities recalibrated on validation (temperature and bias) before thresholds " \
        "are read; the scikit-learn baselines use no class weights"


def measures(f: RunFacts) -> str | None:
    m = f.evaluation
    if not m:
        return None
    return (f"{m['metric'].upper()} on the {m['split']} split and every metric with a 95% interval (DeLong for AUC, "
            f"Clopper-Pearson for proportions, stratified bootstrap with {m.get('n_boot')} resamples otherwise); "
            f"operating point `{m.get('threshold_spec')}` chosen on {m.get('threshold_chosen_on')}; Brier, ECE, "
            "reliability and decision curves; paired comparisons with Holm-adjusted p-values")


def performance(f: RunFacts) -> str | None:
    m = f.evaluation
    if not m or not m.get("groups"):
        return None
    key = m["metric"]
    parts = []
    for g in m["groups"]:
        ivs = g.get("intervals") or {}
        extra = "".join(f", {k} {_iv(ivs.get(k))}" for k in ("sensitivity", "specificity") if k in ivs)
        parts.append(f"{g['title']}: {key.upper()} {_iv(ivs.get(key))}{extra}")
    return "; ".join(parts)


def calibration(f: RunFacts) -> str | None:
    m = f.evaluation
    if not m or not m.get("groups"):
        return None
    parts = []
    for g in m["groups"]:
        c = g.get("calibration") or {}
        if c.get("before") and c.get("after"):
            parts.append(f"{g['title']}: Brier {_iv(c['before'].get('brier'))} before, "
                         f"{_iv(c['after'].get('brier'))} after temperature scaling")
    ext = [f"{e['name']}: " + ", ".join(f"{t} slope {r['calibration']['external']['slope']:.2f}"
                                        for t, r in e["models"].items() if r.get("calibration"))
           for e in f.externals.values()]
    return "; ".join(parts + ext) or None


def outputs(f: RunFacts) -> str | None:
    o = f.operating
    if not o:
        return None
    stages = o.get("stages") or {}
    thr = sorted({f"{r.get('threshold_name')}" for r in stages.values()})
    return (f"class probabilities after temperature scaling; a decision at the operating point ({', '.join(thr)}, "
            f"chosen on {o.get('chosen_on')}; {len(stages)} classifiers in evaluate/operating_points.json)")


def prediction_calc(f: RunFacts) -> str | None:
    m = f.evaluation
    if not m or not m.get("groups"):
        return None
    return ("each model's prediction is the mean probability over its seeds ("
            + ", ".join(f"{g['title']}: {len(g['seeds'])}" for g in m["groups"]) + ")")


def subgroups(f: RunFacts) -> str | None:
    s = f.subgroups
    if not s:
        return None
    rows = s.get("rows") or []
    head = s.get("headline", "auc")
    variables = sorted({r["variable"] for r in rows})
    small = sorted({f"{r['variable']}={r['subgroup']}" for r in rows if r.get("too_small")})
    lowest = min((r for r in rows if finite(((r["vs_rest"].get(head) or {}).get("p_holm")))),
                 key=lambda r: r["vs_rest"][head]["p_holm"], default=None)
    text = f"subgroups by {', '.join(variables)} (evaluate/subgroups.csv)"
    if lowest:
        text += (f"; smallest Holm-adjusted p against the rest: {lowest['model']}, {lowest['variable']}="
                 f"{lowest['subgroup']}, {head.upper()} difference {lowest['vs_rest'][head]['diff']:+.3f} "
                 f"(p {lowest['vs_rest'][head]['p_holm']:.3f})")
    return text + (f"; too small to read: {', '.join(small)}" if small else "")


def external(f: RunFacts) -> str | None:
    if not f.externals:
        return None
    parts = []
    for folder, e in f.externals.items():
        head = e["headline"]
        best = ", ".join(f"{t} {_iv((r.get('external') or {}).get(head))}" for t, r in e["models"].items())
        parts.append(f"{e['name']} ({e['n']} rows, {folder}/): {head.upper()} {best}"
                     + (f"; recalibrated on its `{e['recalibrate_on']}` subset, reported apart" if e.get(
                         "recalibrate_on") else ""))
    return "; ".join(parts)


def shift(f: RunFacts) -> str | None:
    if not f.externals:
        return None
    parts = []
    for e in f.externals.values():
        mix = e.get("shift") or {}
        top = [r for r in mix.get("continuous", []) if finite(r.get("smd"))][:3]
        parts.append(f"{e['name']}: outcome shares " + ", ".join(
            f"{k} {v['internal']:.2f} vs {v['external']:.2f}" for k, v in (mix.get("outcome") or {}).items())
            + "; largest SMDs " + ", ".join(f"{r['feature']} {r['smd']:+.2f}" for r in top)
            + f"; per-image intensity SMD {(mix.get('images') or {}).get('smd_image_mean', math.nan):+.2f}")
    return "; ".join(parts)


def updating(f: RunFacts) -> str | None:
    if not f.externals and not f.operating:
        return None
    parts = ["a temperature (and bias for binary risks) per classifier fitted on the internal validation split"]
    for e in f.externals.values():
        if e.get("recalibration"):
            r = e["recalibration"]
            parts.append(f"{e['name']}: logistic recalibration fitted on its `{r['subset']}` subset "
                         f"({r['fitted_rows']} rows), scored on {r['scored_rows']} other rows")
    return "; ".join(parts)


def flow(f: RunFacts) -> str | None:
    p = f.provenance
    if not p:
        return None
    return eligibility(f) + "; then " + "; ".join(
        f"{s} {c['rows']}" for s, c in (p.get("counts") or {}).items())


def characteristics(f: RunFacts) -> str | None:
    s, t = f.schema, f.table
    if not s or t is None:
        return None
    demo = [x for x in s["features"] if (x.get("group") or "").lower().startswith("demograph")] or s["features"][:3]
    parts = []
    for x in demo[:5]:
        per = []
        for split, rows in t.groupby("split"):
            v = rows[x["name"]]
            if x["kind"] == "continuous":
                per.append(f"{split} {float(v.mean()) * x['std'] + x['mean']:.4g}")
            else:
                cats = x.get("categories") or []
                top = int(v.mode().iloc[0]) if len(v) else 0
                per.append(f"{split} {cats[top - 1] if top > 0 else 'missing'} {_pct(float((v == top).mean()))}")
        parts.append(f"{x['name']} ({'mean' if x['kind'] == 'continuous' else 'commonest'}): " + ", ".join(per))
    return "; ".join(parts)


def software(f: RunFacts) -> str | None:
    env = f.environment
    if not env:
        return None
    keys = ("amfmedit", "python", "torch", "torchvision", "scikit_learn", "captum", "pytorch_grad_cam", "mamba_ssm")
    return ", ".join(f"{k} {env[k]}" for k in keys if env.get(k)) + f"; {env.get('platform')}, device {env.get('device')}"


def hashes(f: RunFacts) -> str | None:
    h = f.checkpoint_hashes()
    if not h:
        return None
    return "; ".join(f"{s}: sha256 {v[:16]}..." for s, v in h.items()) + " (full hashes in the model card)"


def initialization(f: RunFacts) -> str | None:
    pre = (f.config(names.PRETRAIN) or {}).get("config")
    if not pre:
        return None
    return (f"encoders from the run's contrastive pretraining (seed {pre.get('seed')}, image weights "
            f"{pre.get('image_weights') or 'random initialisation'}); heads and fusions initialised under each seed")


def ensembling(f: RunFacts) -> str | None:
    return prediction_calc(f)


def uncertainty(f: RunFacts) -> str | None:
    m = f.evaluation
    if not m:
        return None
    c = m.get("comparisons") or {}
    return (f"95% intervals for every metric ({m.get('n_boot')} bootstrap resamples where not DeLong or "
            f"Clopper-Pearson); {len(c.get('rows') or [])} paired comparisons, Holm-adjusted per metric"
            + (f"; {c['note']}" if c.get("note") else ""))


def robustness(f: RunFacts) -> str | None:
    parts = []
    m = f.evaluation or {}
    if any(g.get("mask") for g in m.get("groups", [])):
        parts.append("masked-feature experiments (incomplete tabular data)")
    if f.subgroups:
        parts.append("subgroup analysis")
    if f.externals:
        parts.append("external cohort(s): " + ", ".join(e["name"] for e in f.externals.values()))
    if m.get("groups") and any(len(g.get("seeds") or []) > 1 for g in m["groups"]):
        parts.append("spread over training seeds")
    return "; ".join(parts) or None


def explainability(f: RunFacts) -> str | None:
    parts = [f"Integrated Gradients of {s}" for s in names.ig_reports(f.run)]
    parts += [f"Grad-CAM of {s}" for s in names.cam_reports(f.run)]
    parts += [f"permutation importance of {p.parent.name[len('permutation-'):]}"
              for p in f.glob("explain/permutation-*/summary.json")]
    return "; ".join(parts) or None


def diagnostic(f: RunFacts) -> str | None:
    m = f.evaluation
    if not m or not m.get("groups"):
        return None
    parts = []
    for g in m["groups"]:
        ivs = g.get("intervals") or {}
        if "sensitivity" in ivs:
            parts.append(f"{g['title']}: " + ", ".join(f"{k} {_iv(ivs.get(k))}"
                                                        for k in ("sensitivity", "specificity", "ppv", "npv")))
    return "; ".join(parts) or None


def failures(f: RunFacts) -> str | None:
    m = f.evaluation
    if not m or not m.get("groups"):
        return None
    parts = [f"{g['title']}: TP {c['tp']}, FP {c['fp']}, TN {c['tn']}, FN {c['fn']}"
             for g in m["groups"] if (c := g.get("counts"))]
    return ("confusion counts at the operating point: " + "; ".join(parts)) if parts else None


# ---------------------------------------------------------------------------------------------- checklists

D, PROV, SCHEMA, TABLE = "<data>/", "<data>/provenance.json", "<data>/schema.json", "<data>/tabular.parquet"
EV, OP, SG, EXT = "evaluate/metrics.json", "evaluate/operating_points.json", "evaluate/subgroups.json", \
    "external-*/metrics.json"
CONFIGS = ("finetune-*/config.json", "supervised-*/config.json")


def _items(guideline: str, rows: list[tuple]) -> list[Item]:
    out = []
    for row in rows:  # (number, topic, fill, sources[, hint])
        number, topic, fill, sources, hint = (tuple(row) + ("",))[:5]
        out.append(Item(guideline, number, topic, fill, tuple(sources), hint))
    return out


TRIPOD_AI = _items(TRIPOD, [
    ("1", "Title", None, (), "name the study as developing/evaluating a prediction model, its population and outcome"),
    ("2", "Abstract", None, (), "a structured abstract following TRIPOD+AI for Abstracts"),
    ("3a", "Healthcare context and rationale", None, (), "the clinical setting, why a model, existing models"),
    ("3b", "Target population and intended use", None, (), "who the model is for, where in care, its users"),
    ("3c", "Known health inequalities", None, (), "inequalities between groups relevant to the model"),
    ("4", "Objectives", None, (), "objectives; development, evaluation or both"),
    ("5a", "Data sources", source_of, (PROV,)),
    ("5b", "Dates of data collection", _given("dates"), (PROV,), "start and end of accrual (data spec [source] dates)"),
    ("6a", "Setting and centres", _given("setting"), (PROV,), "setting, number and location of centres"),
    ("6b", "Eligibility criteria", eligibility, (PROV,)),
    ("6c", "Treatments received", None, (), "treatments and how they were handled"),
    ("7", "Data preparation and quality checks", preprocessing, (SCHEMA,)),
    ("8a", "Outcome definition and assessment", outcome, (SCHEMA, PROV)),
    ("8b", "Qualifications of outcome assessors", None, (), "who assessed subjective outcomes"),
    ("8c", "Blinding of outcome assessment", None, (), "whether assessors knew the predictors"),
    ("9a", "Choice of initial predictors", predictors, (SCHEMA, PROV)),
    ("9b", "Predictor definitions and measurement", None, (), "how and when each predictor was measured"),
    ("9c", "Qualifications of predictor assessors", None, (), "who assessed subjective predictors"),
    ("10", "Sample size", sample_size, (PROV,)),
    ("11", "Missing data", missing, (SCHEMA,)),
    ("12a", "Use of the data (partitions)", partitions, (TABLE, PROV)),
    ("12b", "Predictor handling", preprocessing, (SCHEMA,)),
    ("12c", "Model type, building steps, tuning, internal validation", models, ("pretrain/config.json",) + CONFIGS
     + ("baseline-*/config.json",)),
    ("12d", "Heterogeneity across clusters", None, (), "how clustering (centres, scanners) was handled"),
    ("12e", "Performance measures", measures, (EV,)),
    ("12f", "Model updating", updating, (OP, EXT)),
    ("12g", "How predictions were calculated in evaluation", prediction_calc, (EV,)),
    ("13", "Class imbalance", imbalance, CONFIGS),
    ("14", "Fairness", subgroups, (SG,), "how fairness was addressed (run `evaluate --subgroup`)"),
    ("15", "Model output and thresholds", outputs, (OP,)),
    ("16", "Differences between development and evaluation data", shift, (EXT,),
     "run `evaluate --external` on another cohort"),
    ("17", "Ethics approval and consent", None, (), "ethics committee, approval number, consent"),
    ("18a", "Funding", None, (), "funding and the funders' role"),
    ("18b", "Conflicts of interest", None, (), "all authors' declarations"),
    ("18c", "Protocol", None, (), "where the protocol is, or that there is none"),
    ("18d", "Registration", None, (), "registry and number, or that there is none"),
    ("18e", "Data availability", None, (), "where and how the data can be obtained"),
    ("18f", "Code availability", None, (), "repository and version of the code"),
    ("19", "Patient and public involvement", None, (), "involvement, or that there was none"),
    ("20a", "Flow of participants", flow, (PROV,)),
    ("20b", "Characteristics per data source and partition", characteristics, (TABLE, SCHEMA)),
    ("20c", "Evaluation data against development data", shift, (EXT,), "run `evaluate --external`"),
    ("21", "Participants and outcome events per analysis", sample_size, (PROV,)),
    ("22", "Full model specification", hashes, ("finetune-*/best.pt", "supervised-*/best.pt",
                                                "baseline-*/model.pkl")),
    ("23a", "Performance with confidence intervals", performance, (EV,)),
    ("23b", "Heterogeneity of performance (subgroups)", subgroups, (SG,), "run `evaluate --subgroup`"),
    ("24", "Model updating results", updating, (OP, EXT)),
    ("25", "Interpretation", None, (), "overall interpretation, fairness in context"),
    ("26", "Limitations", None, (), "biases, uncertainty, generalisability"),
    ("27a", "Handling of poor-quality or unavailable inputs", None, (), "what users do with missing or bad inputs"),
    ("27b", "User interaction and expertise", None, (), "what users need to know"),
    ("27c", "Future research", None, (), "next steps"),
])

CLAIM_2024 = _items(CLAIM, [
    ("1", "Identification as AI study, technology category", None, (), "title naming the AI technique"),
    ("2", "Structured summary", None, (), "abstract of design, methods, results, conclusions"),
    ("3", "Background, intended use and role of the AI", None, (), "clinical background and intended use"),
    ("4", "Aims, objectives, hypotheses", None, (), "study objectives"),
    ("5", "Prospective or retrospective", None, (), "the study design"),
    ("6", "Study goal", None, (), "model creation, feasibility, non-inferiority, ..."),
    ("7", "Data sources", source_of, (PROV,)),
    ("8", "Inclusion and exclusion criteria", eligibility, (PROV,)),
    ("9", "Data preprocessing", preprocessing, (SCHEMA,)),
    ("10", "Selection of data subsets", eligibility, (PROV,)),
    ("11", "De-identification", None, (), "how the data were de-identified"),
    ("12", "Missing data", missing, (SCHEMA,)),
    ("13", "Image acquisition protocol", None, (), "scanners, protocols, reconstruction"),
    ("14", "Reference standard definition", outcome, (SCHEMA, PROV)),
    ("15", "Rationale for the reference standard", None, (), "why this reference standard"),
    ("16", "Source of reference standard annotations", None, (), "who annotated, their qualifications"),
    ("17", "Annotation of the test set", None, (), "how the test set was annotated"),
    ("18", "Inter- and intrarater variability", None, (), "agreement measures, or why none"),
    ("19", "Assignment to partitions", partitions, (TABLE, PROV)),
    ("20", "Level of partition disjointness", disjointness, (TABLE,)),
    ("21", "Intended sample size", None, (), "how the sample size was determined"),
    ("22", "Model description", models, ("pretrain/config.json",) + CONFIGS + ("baseline-*/config.json",)),
    ("23", "Software libraries and versions", software, ("environment.json",)),
    ("24", "Initialization of parameters", initialization, ("pretrain/config.json",)),
    ("25", "Training details", training, CONFIGS),
    ("26", "Selection of the final model", selection, ("*-lrsearch/selection.json", "baseline-*-search/selection.json")),
    ("27", "Ensembling", ensembling, (EV,)),
    ("28", "Performance metrics", measures, (EV,)),
    ("29", "Significance and uncertainty", uncertainty, (EV,)),
    ("30", "Robustness or sensitivity analysis", robustness, (EV, SG, EXT), "run `evaluate --subgroup/--external`"),
    ("31", "Explainability methods", explainability, ("explain/*/summary.json",), "run `amfmedit explain`"),
    ("32", "Evaluation on internal data", performance, (EV,)),
    ("33", "Testing on external data", external, (EXT,), "run `evaluate --external`"),
    ("34", "Clinical trial registration", None, (), "registration, or not a trial"),
    ("35", "Patients or examinations included and excluded", flow, (PROV,)),
    ("36", "Characteristics per partition", characteristics, (TABLE, SCHEMA)),
    ("37", "Performance with uncertainty", performance, (EV,)),
    ("38", "Diagnostic performance estimates", diagnostic, (EV,)),
    ("39", "Failure analysis", failures, (EV,)),
    ("40", "Limitations", None, (), "the study's limitations"),
    ("41", "Implications for practice", None, (), "intended use and clinical role"),
    ("42", "Protocol or technical details", None, (), "where the protocol is"),
    ("43", "Availability of software, model and data", None, (), "repository, model, data access"),
    ("44", "Funding", None, (), "sources of funding and their role"),
])

CHECKLISTS = {TRIPOD: TRIPOD_AI, CLAIM: CLAIM_2024}


def filled(item: Item, facts: RunFacts) -> str | None:
    """The item's text from the run (None: a placeholder); a file that cannot be read leaves a placeholder."""
    if item.fill is None:
        return None
    try:
        text = item.fill(facts)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return None
    return text or None


def placeholder(item: Item) -> str:
    mark = PLACEHOLDER.format(guideline=item.guideline, number=item.number)
    return f"**{mark}** {item.hint}" if item.hint else f"**{mark}**"


def checklist_markdown(facts: RunFacts) -> str:
    """The report's section: both checklists, every item filled from the run or marked."""
    out = ["## Reporting checklists: TRIPOD+AI (2024) and CLAIM (2024)\n\n",
           "Items the run can answer are filled from its files (named in the last column); every other item is "
           "marked **[TO FILL: checklist item]** for the authors. Topics paraphrase Collins et al., BMJ "
           "2024;385:e078378 and Tejani et al., Radiol Artif Intell 2024;6(4):e240300, whose wording is the "
           "authority.\n"]
    for name, items in CHECKLISTS.items():
        rows = []
        for it in items:
            text = filled(it, facts)
            cell = (text if text is not None else placeholder(it)).replace("|", "/").replace("\n", " ")
            files = ", ".join(f"`{s}`" for s in it.sources) if text is not None else ""
            rows.append((text is not None, f"| {it.number} | {it.topic} | {cell} | {files} |\n"))
        n_auto = sum(auto for auto, _ in rows)
        out.append(f"\n### {name}\n\n{n_auto} of {len(items)} items filled from the run.\n\n"
                   "| Item | Topic | From this run | Files |\n|---|---|---|---|\n")
        out += [row for _, row in rows]
    return "".join(out)
