"""Raw-release writers for tests/data (imported as ``data_raw``): small raw releases written in exactly the real formats.

``write_ol3i`` writes ``clinical_data.csv`` + ``l3_slices.h5`` (int16 HU, one dataset per
``anon_id``); ``write_dvm`` writes DVM's three tables (with their stray header spaces) and
JPEGs under ``Confirmed_fronts/<Maker>/<Year>/<Image_name>``. The values are chosen here so
tests can compute every expected number by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OL3I_SPLITS = ["train", "train", "train", "val", "test", "train", "val", "test", "train", "train"]


def write_ol3i(folder: Path, *, n: int = 30, size: int = 16, table: str = "clinical_data.csv",
               variant_423: bool = False):
    """A small OL3I release; returns (table DataFrame, {anon_id: HU slice})."""
    import h5py
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = [f"p{i:03d}" for i in range(n)]
    df = pd.DataFrame({
        "anon_id": ids,
        "label_1y": [1 if i % 4 == 0 else 0 for i in range(n)],
        "set_1y": [OL3I_SPLITS[i % len(OL3I_SPLITS)] for i in range(n)],
        "age_at_scan": np.round(rng.uniform(30, 90, n), 1),
        "gender": rng.integers(0, 2, n),
        "smoker": np.where(np.arange(n) % 7 == 3, np.nan, rng.integers(0, 2, n)),
        "bmi": np.where(np.arange(n) % 5 == 1, np.nan, np.round(rng.uniform(18, 40, n), 1)),
        "CCI": rng.integers(0, 6, n),
        "C09": rng.poisson(1.0, n),
    })
    if variant_423:  # the reference code's CSV: an image id column, no 5-year columns
        df.insert(0, "img_id", [f"img{i}" for i in range(n)])
    else:
        df.insert(2, "label_5y", [1 if i % 3 == 0 else 0 for i in range(n)])
        df.insert(4, "set_5y", [OL3I_SPLITS[(i + 1) % len(OL3I_SPLITS)] for i in range(n)])
    df.to_csv(folder / table, index=False)
    slices = {}
    with h5py.File(folder / "l3_slices.h5", "w") as f:
        for i in ids:
            hu = rng.integers(-1024, 1500, (size, size)).astype(np.int16)
            f.create_dataset(i, data=hu)
            slices[i] = hu
    return df, slices


def ol3i_spec(size: int = 16, **table_changes):
    """The shipped ``ol3i`` spec at a test size."""
    from amfmedit.data.prepare import apply_overrides
    from amfmedit.data.spec import load_spec

    spec = apply_overrides(load_spec("ol3i"), image_size=size)
    spec.image.raw_size = [size, size]
    for key, value in table_changes.items():
        setattr(spec.table, key, value)
    return spec


MODELS = [("Ford", "Fiesta", "29_1", 1.2, 12000), ("BMW", "3 Series", "8_1", 2.0, 30000),
          ("Kia", "Ceed", "43_2", 1.6, 18000)]


def write_dvm(folder: Path, *, per_model=(12, 9, 2), size: int = 20):
    """A small DVM release; returns the expected rows (one dict per advert that should survive)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    ads = ["Maker, Genmodel, Genmodel_ID,Adv_ID,Adv_year,Adv_month,Color,Reg_year,Bodytype,Runned_Miles,"
           "Engin_size,Gearbox,Fuel_type,Price,Seat_num,Door_num"]
    prices = ["Maker, Genmodel, Genmodel_ID, Year, Entry_price"]
    images = ["Genmodel_ID, Image_ID, Image_name, Predicted_viewpoint, Quality_check"]
    kept = []
    for (maker, model, gid, engine, entry), count in zip(MODELS, per_model):
        for year in (2015, 2016, 2017):
            prices.append(f"{maker},{model},{gid},{year},{entry + 100 * (year - 2015)}")
        for a in range(1, count + 1):
            year = 2015 + a % 3
            adv = f"{gid}$${a}"
            miles = str(1000 * a)
            fate = "keep"
            if a == 2:
                year = 2012  # no entry price for this registration year: dropped by the join
                fate = "no price"
            if a == 3:
                miles = "unknown"  # text in Runned_Miles: coerced to missing, then dropped
                fate = "missing"
            colour = "Red" if a % 2 else "Blue"
            ads.append(f"{maker},{model},{gid},{adv},2018,{1 + a % 12},{colour},{year}.0,Saloon,{miles},"
                       f"{engine + 0.1 * (a % 2):.1f}L,Manual,Petrol,{entry - 500 * a},5.0,4.0")
            name = f"{maker}$${model}$${year}$${colour}$${gid}$${a}$$image_1.jpg"
            # a side view that must be ignored, then the front view (a failed check for advert 4)
            images.append(f"{gid},{gid}$${a}$$0,{name.replace('image_1', 'image_0')},90,P")
            qc = "F" if a == 4 else "P"
            images.append(f"{gid},{gid}$${a}$$1,{name},0,{qc}")
            if a == 4:
                fate = "no front view"
            if qc == "P":
                path = folder / "Confirmed_fronts" / maker / str(year) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (size, size, 3)).astype(np.uint8)).save(path, quality=95)
            if fate == "keep":
                kept.append(dict(Adv_ID=adv, Genmodel_ID=gid, Reg_year=year, Runned_Miles=1000 * a,
                                 Engine_size=round(engine + 0.1 * (a % 2), 1), Entry_price=entry + 100 * (year - 2015),
                                 Price=entry - 500 * a, Color=colour, image=folder / "Confirmed_fronts" / maker /
                                 str(year) / name))
    (folder / "Ad_table.csv").write_text("\n".join(ads) + "\n")
    (folder / "Price_table.csv").write_text("\n".join(prices) + "\n")
    (folder / "Image_table.csv").write_text("\n".join(images) + "\n")
    return kept


def dvm_spec(size: int = 16, min_class_count: int = 5):
    from amfmedit.data.prepare import apply_overrides
    from amfmedit.data.spec import load_spec

    spec = apply_overrides(load_spec("dvm"), image_size=size)
    spec.table.min_class_count = min_class_count
    return spec


def leftovers(data_dir: Path) -> list[str]:
    """Everything under the data dir (a failed prepare must leave nothing, not even temp folders)."""
    if not data_dir.exists():
        return []
    return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*"))
