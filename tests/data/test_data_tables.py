"""Raw tables that pandas reads without complaint but that are wrong: a header without rows, a
repeated column name, infinities in a numeric column. One line naming the culprit; nothing written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from data_raw import leftovers, ol3i_spec, write_ol3i

from amfmedit.stages.prepare import prepare
from amfmedit.data.readers import read_table_file
from amfmedit.data.transform import transform_table
from amfmedit.errors import UserError


def _prepare_fails(tmp_path, data_dir, edit, match):
    raw = tmp_path / "raw"
    write_ol3i(raw)
    csv = raw / "clinical_data.csv"
    edit(csv)
    with pytest.raises(UserError, match=match) as err:
        prepare(ol3i_spec(), raw=raw, data_dir=data_dir)
    assert "\n" not in str(err.value)
    assert leftovers(data_dir) == []
    return str(err.value)


def _keep_header_only(csv):
    csv.write_text(csv.read_text().splitlines()[0] + "\n")


def _repeat_column(csv):
    lines = csv.read_text().splitlines()
    head, *rows = lines
    rename = head.replace(",CCI,", ",bmi,")  # the 'CCI' header typed as 'bmi' a second time
    assert rename != head
    csv.write_text("\n".join([rename, *rows]) + "\n")


def _put(column, row, text):
    def edit(csv):
        df = pd.read_csv(csv, dtype={"anon_id": str})
        df[column] = df[column].astype(object)
        df.loc[row, column] = text
        df.to_csv(csv, index=False)
    return edit


def test_header_only_csv_is_one_line(tmp_path, data_dir):
    _prepare_fails(tmp_path, data_dir, _keep_header_only,
                   r"^.*clinical_data\.csv: the table has a header but no rows; add the data rows")


def test_repeated_header_names_the_column(tmp_path, data_dir):
    _prepare_fails(tmp_path, data_dir, _repeat_column,
                   r"^.*clinical_data\.csv: column 'bmi' appears twice in the header; rename or remove one$")


@pytest.mark.parametrize("text, shown", [("inf", "inf"), ("-inf", "-inf"), ("Infinity", "inf")])
def test_infinity_in_a_numeric_column_names_column_and_id(tmp_path, data_dir, text, shown):
    _prepare_fails(tmp_path, data_dir, _put("bmi", 4, text),
                   rf"^clinical_data\.csv: column 'bmi' has the non-finite value {shown} at id 'p004' "
                   rf"\(1 such value\); replace it with a number, or leave the cell empty to mark it missing$")


def test_infinity_next_to_text_in_a_numeric_column(tmp_path, data_dir):
    def edit(csv):  # two infinities in one column: the first is named, both counted
        _put("age_at_scan", 2, "-inf")(csv)
        _put("age_at_scan", 9, "inf")(csv)
    _prepare_fails(tmp_path, data_dir, edit, r"column 'age_at_scan' has the non-finite value -inf at id 'p002' "
                                             r"\(2 such values\)")


def test_predict_transform_rejects_infinity_and_reads_finite_rows(tmp_path, data_dir):
    raw = tmp_path / "raw"
    df, _ = write_ol3i(raw)
    schema = prepare(ol3i_spec(), raw=raw, data_dir=data_dir).schema
    x_cont, x_cat, missing = transform_table(schema, df, where="new.csv")
    assert np.isfinite(x_cont).all() and x_cont.shape == (30, schema.n_cont)
    bad = df.copy()
    bad.loc[7, "bmi"] = -np.inf
    with pytest.raises(UserError, match=r"^new\.csv: column 'bmi' has the non-finite value -inf at id 'p007' "):
        transform_table(schema, bad, where="new.csv")


def test_read_table_file_header_checks_also_for_tsv(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("id\tx\t x \n1\t2\t3\n")  # ' x ' is 'x' once stripped
    with pytest.raises(UserError, match=r"t\.tsv: column 'x' appears twice in the header"):
        read_table_file(tsv)
    tsv.write_text("id\tx\ty\n1\t2\t3\n")
    assert read_table_file(tsv).columns.tolist() == ["id", "x", "y"]
