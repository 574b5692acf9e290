"""The app's precision option offers fp8 (planner/cost/fp8.py): priced on a device with an FP8
peak, refused in one message on one without."""

from __future__ import annotations

from test_app import ctx, rendered, run_app  # tests/explorer/test_app.py


def test_fp8_on_the_h100_preset_and_refused_on_the_a100():
    at = run_app(precision="fp8", machine="h100_cluster", algorithm="data_parallel")
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert ctx(at).result.options.precision == "fp8"
    assert "fp8" in at.selectbox(key="sb_precision").options
    at = run_app(precision="fp8", algorithm="data_parallel")  # the default machine: DGX A100s
    assert not at.exception
    assert any("has no peak_flops_fp8" in rendered(e.value) for e in at.error)
