"""The synthetic OL3I generator's optional modality strengths (R_conf studies, benchmarks/bench_rconf.py)."""

from __future__ import annotations

import pytest

from amfmedit.data.prepare import apply_overrides

from amfmedit.stages.prepare import prepare
from amfmedit.data.spec import load_spec
from amfmedit.errors import UserError


def _ol3i(tmp_path, tag, **options):
    spec = apply_overrides(load_spec("synthetic-ol3i"), image_size=8)
    opts = dict(patients=300, seed=11, features=25, prevalence=0.2) | options
    return prepare(spec, data_dir=tmp_path / f"data-{tag}", synthetic=opts).provenance["synthetic"]


def test_strengths_scale_the_logit_parts_and_move_the_oracle_ratio(tmp_path):
    base = _ol3i(tmp_path, "base")
    image = _ol3i(tmp_path, "image", image_strength=3.0, tabular_strength=0.3)
    assert image["options"]["image_strength"] == 3.0 and base["options"]["tabular_strength"] == 1.0
    sd_b, sd_i = base["risk_model"]["logit_sd"], image["risk_model"]["logit_sd"]
    assert sd_i["image"] == pytest.approx(3.0 * sd_b["image"]) and sd_i["tabular"] == pytest.approx(0.3 * sd_b["tabular"])
    ratio = lambda s: s["oracle"]["image_only"] / s["oracle"]["tabular_only"]  # noqa: E731
    assert ratio(image) > ratio(base) + 0.2  # the image now carries more of the risk than the table


@pytest.mark.parametrize("options, text", [(dict(image_strength=-1.0), "--image-strength -1"),
                                           (dict(image_strength=0.0, tabular_strength=0.0), "no signal")])
def test_bad_strengths_are_refused(tmp_path, options, text):
    with pytest.raises(UserError, match=text):
        _ol3i(tmp_path, "bad", patients=20, **options)
