"""The process set-up every stage runs first (setup_runtime), and the process-wide CPU tuning."""

from __future__ import annotations

import platform

from amfmedit.train import cpu_alloc, runtime


def test_cpu_allocator_tuning_applies_once_and_can_be_disabled(monkeypatch):
    monkeypatch.setattr(cpu_alloc, "_DONE", None)
    monkeypatch.setenv("AMFMEDIT_MALLOPT", "0")
    assert cpu_alloc.tune_cpu_allocator() is False
    monkeypatch.setattr(cpu_alloc, "_DONE", None)
    monkeypatch.delenv("AMFMEDIT_MALLOPT")
    applied = cpu_alloc.tune_cpu_allocator()
    if platform.libc_ver()[0] == "glibc":
        assert applied is True
    assert cpu_alloc.tune_cpu_allocator() is applied  # once per process, then remembered


def test_the_runtime_set_up_tunes_the_allocator_for_a_cpu_run(monkeypatch):
    # The one place the process is tuned: what every stage (training, explain, ...) starts with.
    calls = []
    monkeypatch.setattr(runtime, "tune_cpu_allocator", lambda: calls.append(1) or True)
    rt = runtime.setup_runtime("cpu")
    assert rt.device.type == "cpu" and calls == [1]
