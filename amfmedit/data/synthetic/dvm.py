"""Synthetic DVM: car adverts (9 continuous + 4 categorical features) and front-view images.

Written in the DVM release's format (``Ad_table.csv``, ``Price_table.csv`` and
``Image_table.csv`` with their stray header spaces; JPEGs under
``Confirmed_fronts/<Maker>/<Year>/<Image_name>``; adverts with several views, failed quality
checks, missing values and unmatched registration years) so that ``prepare`` reads it with
the real DVM reader and its filters.

The class (``Genmodel_ID``) signal is split between the modalities. Every car model belongs
to a segment (small, medium, premium, SUV, family, sports): the segment fixes the entry price
per year and the usual body type, doors and seats, and the body proportions in the image.
Within a segment, models differ in the tabular features (engine size, price level, gearbox,
fuel, colour preferences) and in the image (grille and headlight shapes and sizes, cabin and
body proportions). ``synthetic_truth.csv`` holds each advert's log joint probability under
every model, so ``prepare`` reports the Bayes accuracy over the models that survive the
``min_class_count`` filter: an upper bound for any classifier, computed from the generator's
latent variables.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from amfmedit.data.synthetic.cars import COLOURS, CarShape, draw_car
from amfmedit.data.synthetic.common import Generated, write_csv
from amfmedit.data.workers import default_workers, ordered_map
from amfmedit.errors import UserError

# maker, model, segment, maker code (Genmodel_ID = "<maker code>_<model number>")
CATALOGUE = [
    ("Ford", "Fiesta", "small", 29), ("Vauxhall", "Corsa", "small", 95), ("Volkswagen", "Golf", "medium", 96),
    ("Ford", "Focus", "medium", 29), ("BMW", "3 Series", "premium", 8), ("Audi", "A4", "premium", 7),
    ("Nissan", "Qashqai", "suv", 63), ("Kia", "Sportage", "suv", 43), ("Skoda", "Octavia", "family", 80),
    ("Ford", "S-Max", "family", 29), ("Mazda", "MX-5", "sports", 55), ("Audi", "TT", "sports", 7),
    ("Peugeot", "208", "small", 69), ("Honda", "Civic", "medium", 36), ("Mercedes-Benz", "C Class", "premium", 59),
    ("Land Rover", "Range Rover Evoque", "suv", 47), ("Volkswagen", "Passat", "family", 96),
    ("Porsche", "911", "sports", 70), ("Toyota", "Yaris", "small", 92), ("Seat", "Leon", "medium", 78),
    ("Jaguar", "XF", "premium", 41), ("Hyundai", "Tucson", "suv", 38), ("Vauxhall", "Zafira", "family", 95),
    ("BMW", "Z4", "sports", 8), ("Renault", "Clio", "small", 73), ("Kia", "Ceed", "medium", 43),
    ("Volvo", "S60", "premium", 98), ("Volvo", "XC90", "suv", 98), ("Citroen", "Berlingo", "family", 17),
    ("Nissan", "370Z", "sports", 63),
]
# body type(s), doors, seats, entry price in 2010, engine (L), automatic share, diesel share,
# and image proportions: body width, height, ground clearance, cabin height, roof width
SEGMENTS = {
    "small": dict(body=["Hatchback"], doors=((3, 5), (0.4, 0.6)), seats=((4, 5), (0.3, 0.7)), entry=12500,
                  engine=1.2, auto=0.15, diesel=0.25, shape=(0.66, 0.29, 0.07, 0.17, 0.72)),
    "medium": dict(body=["Hatchback"], doors=((3, 5), (0.2, 0.8)), seats=((5,), (1.0,)), entry=19500,
                   engine=1.6, auto=0.3, diesel=0.45, shape=(0.72, 0.30, 0.07, 0.17, 0.68)),
    "premium": dict(body=["Saloon"], doors=((4,), (1.0,)), seats=((5,), (1.0,)), entry=32500, engine=2.0,
                    auto=0.75, diesel=0.6, shape=(0.80, 0.26, 0.06, 0.15, 0.60)),
    "suv": dict(body=["SUV"], doors=((5,), (1.0,)), seats=((5, 7), (0.8, 0.2)), entry=26500, engine=2.0,
                auto=0.5, diesel=0.65, shape=(0.80, 0.35, 0.11, 0.19, 0.70)),
    "family": dict(body=["Estate", "MPV"], doors=((5,), (1.0,)), seats=((5, 7), (0.55, 0.45)), entry=23000,
                   engine=1.8, auto=0.35, diesel=0.7, shape=(0.77, 0.32, 0.08, 0.21, 0.78)),
    "sports": dict(body=["Coupe", "Convertible"], doors=((2, 3), (0.6, 0.4)), seats=((2, 4), (0.6, 0.4)),
                   entry=44000, engine=2.8, auto=0.55, diesel=0.05, shape=(0.82, 0.22, 0.05, 0.12, 0.55)),
}
BODYTYPES = ["Hatchback", "Saloon", "SUV", "Estate", "MPV", "Coupe", "Convertible"]
FUELS = ["Petrol", "Diesel", "Hybrid"]
YEARS = list(range(2006, 2021))
# between-model spread (class means) and within-model spread (adverts) of the image shape
SHAPE_WITHIN = dict(width=0.02, height=0.025, clearance=0.01, cabin=0.02, roof=0.05, grille_w=0.09, grille_h=0.12,
                    light=0.03)
SHAPE_BETWEEN = {key: 0.6 * sd for key, sd in SHAPE_WITHIN.items()}
FLIP = 0.15  # chance that an advert's grille or headlights differ from its model's usual shape
ENGINE_SD, PRICE_SD = 0.10, 0.12  # log-scale spread of engine size and price within a model


def _models(n_classes: int, rng: np.random.Generator) -> list[dict]:
    if not 2 <= n_classes <= len(CATALOGUE):
        raise UserError(f"--classes {n_classes}: synthetic DVM has between 2 and {len(CATALOGUE)} car models")
    models, numbers = [], {}
    for maker, model, segment, code in CATALOGUE[:n_classes]:
        seg = SEGMENTS[segment]
        numbers[code] = numbers.get(code, 0) + 1
        base = dict(zip(("width", "height", "clearance", "cabin", "roof"), seg["shape"]),
                    grille_w=0.38, grille_h=0.38, light=0.14)
        colour_p = rng.dirichlet(np.full(len(COLOURS), 2.0))
        hybrid = 0.08 if rng.random() < 0.3 else 0.005
        diesel = float(np.clip(seg["diesel"] + rng.normal(0, 0.1), 0.02, 0.9)) * (1 - hybrid)
        models.append(dict(
            maker=maker, model=model, segment=segment, gid=f"{code}_{numbers[code]}",
            weight=float(np.exp(rng.normal(0, 0.45))), body=str(rng.choice(seg["body"])),
            engine=seg["engine"] * float(np.exp(rng.normal(0, 0.12))), price=float(np.exp(rng.normal(0, 0.1))),
            auto=float(np.clip(seg["auto"] + rng.normal(0, 0.15), 0.05, 0.95)),
            fuel=np.array([1 - diesel - hybrid, diesel, hybrid]), colour=colour_p,
            shape={key: base[key] + float(rng.normal(0, sd)) for key, sd in SHAPE_BETWEEN.items()},
            round_grille=bool(rng.random() < 0.5), round_lights=bool(rng.random() < 0.5)))
    return models


def _entry_price(segment: str, year: int) -> float:
    return round(SEGMENTS[segment]["entry"] * 1.025 ** (year - 2010) / 5) * 5


def _log_normal_pdf(x, mean, sd):
    return -0.5 * ((x - mean) / sd) ** 2 - math.log(sd * math.sqrt(2 * math.pi))


def _render_adverts(args: tuple) -> list[bytes]:
    """Worker: JPEG bytes of the front views of a run of adverts."""
    from PIL import Image

    seed, size, items = args
    out = []
    for index, shape, colour in items:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCA5, index]))
        buf = io.BytesIO()
        Image.fromarray(draw_car(shape, colour, size, rng)).save(buf, format="JPEG", quality=92)
        out.append(buf.getvalue())
    return out


def generate_dvm(raw_dir: Path, *, patients: int, image_size: int, classes: int = 26, seed: int = 2022,
                 progress=None, workers: int | None = None) -> Generated:
    """Write a synthetic DVM release (``patients`` adverts) into ``raw_dir``."""
    import pyarrow as pa

    progress = progress or (lambda *a: None)
    if patients < 20:
        raise UserError(f"--patients {patients}: use at least 20 adverts")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xD7]))
    models = _models(classes, rng)
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    n, k = patients, len(models)
    prior = np.array([m["weight"] for m in models])
    prior /= prior.sum()
    cls = rng.choice(k, size=n, p=prior)
    seg_of = [m["segment"] for m in models]

    adv_year = rng.choice([2017, 2018, 2019, 2020, 2021], size=n, p=[0.1, 0.45, 0.2, 0.15, 0.1])
    age = np.minimum(rng.geometric(0.18, size=n) - 1, adv_year - YEARS[0])
    reg_year = np.minimum(adv_year - age, YEARS[-1])
    age = adv_year - reg_year
    miles_latent = np.maximum(age * rng.normal(7500, 2500, n) + rng.exponential(1500, n), 5)
    engine_latent = np.array([models[c]["engine"] for c in cls]) * np.exp(rng.normal(0, ENGINE_SD, n))
    entry = np.array([_entry_price(seg_of[c], y) for c, y in zip(cls, reg_year)])
    base_log_price = np.log(entry) - 0.1 * age - miles_latent / 150000
    price_latent = np.exp(base_log_price + np.log([models[c]["price"] for c in cls]) + rng.normal(0, PRICE_SD, n))
    auto = rng.random(n) < np.array([models[c]["auto"] for c in cls])
    fuel = np.array([rng.choice(3, p=models[c]["fuel"]) for c in cls])
    colour_names = list(COLOURS)
    colour = np.array([rng.choice(len(colour_names), p=models[c]["colour"]) for c in cls])
    body = np.array([models[c]["body"] if rng.random() < 0.9 else str(rng.choice(BODYTYPES)) for c in cls])
    doors = np.array([rng.choice(SEGMENTS[seg_of[c]]["doors"][0], p=SEGMENTS[seg_of[c]]["doors"][1]) for c in cls])
    seats = np.array([rng.choice(SEGMENTS[seg_of[c]]["seats"][0], p=SEGMENTS[seg_of[c]]["seats"][1]) for c in cls])
    shapes = []
    for c in cls:
        mean = models[c]["shape"]
        flip_g, flip_l = rng.random() < FLIP, rng.random() < FLIP
        shapes.append(CarShape(**{key: mean[key] + float(rng.normal(0, sd)) for key, sd in SHAPE_WITHIN.items()},
                               round_grille=models[c]["round_grille"] ^ flip_g,
                               round_lights=models[c]["round_lights"] ^ flip_l))

    # --- the truth: log likelihood of each advert under every model (generator latents) ------
    # Color is both a feature and the paint in the image, so it is kept apart to count it once
    tab_ll, img_ll, colour_ll = np.zeros((n, k)), np.zeros((n, k)), np.zeros((n, k))
    for j, m in enumerate(models):
        seg = SEGMENTS[m["segment"]]
        same_seg = np.array([seg_of[c] == m["segment"] for c in cls])
        tab_ll[:, j] += np.where(same_seg, 0.0, -50.0)  # entry price per year fixes the segment
        tab_ll[:, j] += _log_normal_pdf(np.log(engine_latent), np.log(m["engine"]), ENGINE_SD)
        tab_ll[:, j] += _log_normal_pdf(np.log(price_latent) - base_log_price, np.log(m["price"]), PRICE_SD)
        tab_ll[:, j] += np.log(np.where(auto, m["auto"], 1 - m["auto"]))
        tab_ll[:, j] += np.log(np.maximum(m["fuel"][fuel], 1e-6))
        colour_ll[:, j] = np.log(m["colour"][colour])
        p_body = np.where(body == m["body"], 0.9, 0.0) + 0.1 / len(BODYTYPES)
        tab_ll[:, j] += np.log(p_body)
        for values, (options, probs) in ((doors, seg["doors"]), (seats, seg["seats"])):
            lookup = dict(zip(options, probs))
            tab_ll[:, j] += np.log([lookup.get(int(v), 1e-6) for v in values])
        for key, sd in SHAPE_WITHIN.items():
            img_ll[:, j] += _log_normal_pdf(np.array([getattr(s, key) for s in shapes]), m["shape"][key], sd)
        img_ll[:, j] += np.log(np.where([s.round_grille == m["round_grille"] for s in shapes], 1 - FLIP, FLIP))
        img_ll[:, j] += np.log(np.where([s.round_lights == m["round_lights"] for s in shapes], 1 - FLIP, FLIP))

    # --- the raw tables, with the release's quirks ------------------------------------------
    def holes(rate: float) -> np.ndarray:
        return rng.random(n) < rate

    adv_no = np.zeros(n, np.int64)
    seen: dict[int, int] = {}
    for i, c in enumerate(cls):
        seen[c] = seen.get(c, 0) + 1
        adv_no[i] = seen[c]
    gid = np.array([models[c]["gid"] for c in cls])
    adv_id = [f"{g}$${a}" for g, a in zip(gid, adv_no)]
    reg_text = np.where(holes(0.01), np.nan, reg_year.astype(float))
    miles = np.round(miles_latent).astype(np.int64).astype(str).astype(object)
    miles[holes(0.005)] = "unknown"
    price = np.round(price_latent).astype(np.int64).astype(str).astype(object)
    price[holes(0.003)] = "Uncertain"
    engine = np.array([f"{v:.1f}L" for v in engine_latent], dtype=object)
    engine[holes(0.01)] = None
    colour_col = np.array([colour_names[c] for c in colour], dtype=object)
    colour_col[holes(0.01)] = None
    seat_col = np.where(holes(0.01), np.nan, seats.astype(float))
    door_col = np.where(holes(0.01), np.nan, doors.astype(float))
    gearbox = np.where(auto, "Automatic", "Manual").astype(object)
    gearbox[(rng.random(n) < 0.02) & auto] = "Semi-Automatic"
    ad_cols = {
        "Maker": pa.array([models[c]["maker"] for c in cls]), " Genmodel": pa.array([models[c]["model"] for c in cls]),
        " Genmodel_ID": pa.array(gid.tolist()), "Adv_ID": pa.array(adv_id), "Adv_year": pa.array(adv_year),
        "Adv_month": pa.array(rng.integers(1, 13, n)), "Color": pa.array(colour_col.tolist(), pa.string()),
        "Reg_year": pa.array(reg_text, from_pandas=True), "Bodytype": pa.array(body.tolist()),
        "Runned_Miles": pa.array(miles.tolist()), "Engin_size": pa.array(engine.tolist(), pa.string()),
        "Gearbox": pa.array(gearbox.tolist()), "Fuel_type": pa.array([FUELS[f] for f in fuel]),
        "Price": pa.array(price.tolist()), "Seat_num": pa.array(seat_col, from_pandas=True),
        "Door_num": pa.array(door_col, from_pandas=True),
    }
    write_csv(raw_dir / "Ad_table.csv", {f"c{i}": v for i, v in enumerate(ad_cols.values())}, header=list(ad_cols))
    price_rows = [(m, y) for m in models for y in YEARS if rng.random() > 0.04]  # a few years unpriced
    price_cols = {"Maker": [m["maker"] for m, _ in price_rows], " Genmodel": [m["model"] for m, _ in price_rows],
                  " Genmodel_ID": [m["gid"] for m, _ in price_rows], " Year": [y for _, y in price_rows],
                  " Entry_price": [int(_entry_price(m["segment"], y)) for m, y in price_rows]}
    write_csv(raw_dir / "Price_table.csv", {f"c{i}": pa.array(v) for i, v in enumerate(price_cols.values())},
              header=list(price_cols))

    # images: 1-4 per advert, only quality-checked front views exist as files
    views = [0, 45, 90, 135, 180, 225, 270, 315]
    image_rows, jobs_items, files = [], [], []
    for i in range(n):
        n_img = int(rng.integers(1, 5))
        kinds = rng.choice(views, size=n_img)
        if rng.random() < 0.92:
            kinds[int(rng.integers(0, n_img))] = 0
        for j, view in enumerate(kinds):
            quality = "P" if rng.random() < 0.96 else "F"
            name = (f"{models[cls[i]]['maker']}$${models[cls[i]]['model']}$${reg_year[i]}$${colour_names[colour[i]]}"
                    f"$${gid[i]}$${adv_no[i]}$$image_{j}.jpg")
            image_rows.append((gid[i], f"{gid[i]}$${adv_no[i]}$${j}", name, int(view), quality))
            if view == 0 and quality == "P":
                files.append(raw_dir / "Confirmed_fronts" / models[cls[i]]["maker"] / str(reg_year[i]) / name)
                jobs_items.append((i * 8 + j, shapes[i], COLOURS[colour_names[colour[i]]]))
    img_cols = {"Genmodel_ID": [r[0] for r in image_rows], " Image_ID": [r[1] for r in image_rows],
                " Image_name": [r[2] for r in image_rows], " Predicted_viewpoint": [r[3] for r in image_rows],
                " Quality_check": [r[4] for r in image_rows]}
    write_csv(raw_dir / "Image_table.csv", {f"c{i}": pa.array(v) for i, v in enumerate(img_cols.values())},
              header=list(img_cols))
    log_prior = np.log(prior)
    raw_size = math.ceil(1.25 * image_size)  # raw photos are larger than the prepared size, as in DVM
    _write_images(files, jobs_items, seed, raw_size, progress, workers)
    write_csv(raw_dir / "synthetic_truth.csv", {"Adv_ID": pa.array(adv_id), **{
        f"logp_{m['gid']}": pa.array(np.round(log_prior[j] + tab_ll[:, j] + img_ll[:, j] + colour_ll[:, j], 6))
        for j, m in enumerate(models)}})

    gids = [m["gid"] for m in models]
    row_of = {a: i for i, a in enumerate(adv_id)}
    record = {
        "generator": "synthetic-dvm", "seed": seed,
        "options": {"patients": patients, "image_size": image_size, "raw_image_size": raw_size, "classes": classes},
        "informative_features": ["Adv_year", "Adv_month", "Reg_year", "Runned_Miles", "Price", "Seat_num",
                                 "Door_num", "Entry_price", "Engine_size", "Color", "Bodytype", "Gearbox",
                                 "Fuel_type"],
        "class_signal": {
            "tabular": "segment via Entry_price per Reg_year, Bodytype, Seat_num, Door_num; model via Engine_size, "
                       "Price given age and mileage, Gearbox, Fuel_type, Color",
            "image": "segment via body height, clearance, cabin and roof; model via grille and headlight shape "
                     "and size; Color as paint",
        },
        "models": [{"Genmodel_ID": m["gid"], "maker": m["maker"], "model": m["model"], "segment": m["segment"],
                    "prior": float(prior[j])} for j, m in enumerate(models)],
    }

    def finish(ids_kept, labels, class_names, split, label_column):
        import pandas as pd

        if label_column != "Genmodel_ID":
            raise UserError(f"synthetic DVM has no truth for label column {label_column!r}; use Genmodel_ID")
        rows = np.array([row_of[i] for i in ids_kept])
        cols = np.array([gids.index(c) for c in class_names])

        def posterior(*parts):
            x = (log_prior[None, :] + sum(parts))[np.ix_(rows, cols)]
            x = np.exp(x - x.max(axis=1, keepdims=True))
            return x / x.sum(axis=1, keepdims=True)

        full = posterior(tab_ll, img_ll, colour_ll)
        bayes = full.argmax(axis=1)

        def acc(pred, mask):
            return float((pred[mask] == labels[mask]).mean()) if mask.any() else None

        everything = np.ones(len(rows), bool)
        oracle = {"metric": "accuracy", **{s: acc(bayes, split == s) for s in ("train", "val", "test")},
                  "all": acc(bayes, everything),
                  "tabular_only": acc(posterior(tab_ll, colour_ll).argmax(axis=1), everything),
                  "image_only": acc(posterior(img_ll, colour_ll).argmax(axis=1), everything)}
        table = pd.DataFrame({"id": np.asarray(ids_kept, dtype=str), "risk": full[np.arange(len(rows)), labels],
                              "bayes_label": bayes.astype(np.int64)})
        return table, oracle

    return Generated(record=record, finish=finish)


def _write_images(files: list[Path], items: list, seed: int, size: int, progress, workers: int | None) -> None:
    n = len(files)
    if workers is None:
        workers = default_workers(n, 2000)
    chunk = 64
    jobs = [(seed, size, items[s:s + chunk]) for s in range(0, n, chunk)]
    for folder in {p.parent for p in files}:
        folder.mkdir(parents=True, exist_ok=True)
    for start, blobs in zip(range(0, n, chunk), ordered_map(_render_adverts, jobs, workers=workers)):
        for k, blob in enumerate(blobs):
            files[start + k].write_bytes(blob)
        progress("generate images", start + len(blobs), n)
