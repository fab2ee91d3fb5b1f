"""Table 3 figures and the ``amfmedit bench`` machinery (tiny shapes; timings are not asserted)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from amfmedit import bench
from amfmedit.models import AMFFusion, CrossAttentionFusion


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_table3_parameter_counts():
    xattn = CrossAttentionFusion(d_img=2048, d_tab=64, n_classes=2)
    amf = AMFFusion(d_img=2048, d_tab=64, n_classes=2, r_conf=0.95, d_out=2048)
    # 2 x 4,201,472 (blocks) + 1,049,088 (image proj) + 1,024 (image norm) + 33,280 (tab proj)
    # + 512 ([CLS]) + 1,024 (norm) + 1,026 (head); Table 3: 9.49 M
    assert n_params(xattn) == 9_488_898 and round(n_params(xattn) / 1e6, 2) == 9.49
    # Psi_img 2 x (2048*2048 + 2048) + Psi_tab (64*64 + 64 + 64*2048 + 2048) + head 2048*2 + 2; Table 3: 8.53 M
    assert n_params(amf) == 8_534_082 and round(n_params(amf) / 1e6, 2) == 8.53


@pytest.mark.parametrize("size,tokens,expected_gmac", [(512, 424, 3.67), (128, 424, 3.17)])
def test_table3_cross_attention_macs_need_all_424_tabular_tokens(size, tokens, expected_gmac):
    m = CrossAttentionFusion(d_img=2048, d_tab=64, n_classes=2).eval()
    fmap = torch.randn(1, 2048, size // 32, size // 32)
    _, linear = bench.count_macs(lambda: m(torch.randn(1, 2048), torch.randn(1, tokens, 64), fmap))
    assert round(linear, 2) == expected_gmac
    _, one_token = bench.count_macs(lambda: m(torch.randn(1, 2048), torch.randn(1, 64), fmap))
    assert one_token < 0.6  # one tabular token (the paper's text): far less than Table 3 counts


def test_table3_amf_macs():
    m = AMFFusion(d_img=2048, d_tab=64, n_classes=2, r_conf=0.95).eval()
    total, linear = bench.count_macs(lambda: m(torch.randn(1, 2048), torch.randn(1, 64)))
    assert round(linear, 4) == 0.0085 and total == pytest.approx(linear, rel=1e-3)


def test_fusion_table_rows_small():
    rows = bench.fusion_table("cpu", image_sizes={"OL3I": 64, "DVM": 32}, d_img=32, d_tab=8, d_out=16,
                              tabular_tokens=5, repeats=2, warmup=1)
    keys = {(r.module, r.dataset, r.tabular_tokens) for r in rows}
    assert keys == {("cross_attention", d, t) for d in ("OL3I", "DVM") for t in (1, 5)} | {("amf", "OL3I", 1), ("amf", "DVM", 1)}
    for r in rows:
        assert r.latency_ms > 0 and r.macs_g >= r.macs_linear_g > 0
        assert r.paper_params_m == (9.49 if r.module == "cross_attention" else 8.53)
    amf = next(r for r in rows if r.module == "amf")
    assert amf.params_m * 1e6 == n_params(AMFFusion(d_img=32, d_tab=8, n_classes=2, r_conf=0.95, d_out=16))


def test_tabular_table_and_ratios_small():
    rows = bench.tabular_table("cpu", batch=4, n_features=6, repeats=2, warmup=1, memory=False,
                               scan_impls=["sequential", "chunked"])
    assert [(r.model, r.scan_impl) for r in rows] == [
        ("ft_transformer", None), ("ft_mamba", "sequential"), ("ft_mamba", "chunked")]
    assert all(len(r.times_ms) == 2 and r.time_ms > 0 for r in rows)
    ratios = bench.tabular_ratios(rows)
    assert ratios["chunked"]["time_ratio"] == pytest.approx(rows[2].time_ms / rows[0].time_ms)
    assert ratios["sequential"]["memory_ratio"] is None


def test_cpu_peak_memory_counts_the_step_only():
    small = bench.cpu_peak_memory_mb("ft_transformer", 2, 6)
    assert 0 <= small < 50  # a tiny step: not the import of torch, not thread pools


def test_bench_cli_writes_json_and_prints_table(tmp_path, monkeypatch):
    from amfmedit.cli import app

    monkeypatch.setattr("amfmedit.env.environment", lambda: {"stub": "environment() is tested with `info`"})
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--only", "fusion", "--small", "--repeats", "1", "--device", "cpu",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Table 3" in result.output and "cross-attention / AMF latency" in result.output
    data = json.loads(out.read_text())
    assert {r["module"] for r in data["fusion"]} == {"cross_attention", "amf"} and "tabular" not in data
    assert set(data["fusion_latency_ratio"]) == {"OL3I", "DVM"}

    bad = CliRunner().invoke(app, ["bench", "--only", "gpu", "--out", str(tmp_path / "x.json")])
    assert bad.exit_code == 2 and "--only 'gpu': choose fusion or tabular" in bad.output
    assert not (tmp_path / "x.json").exists()
