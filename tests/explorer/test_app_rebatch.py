"""The app's batch field on a static upload: the model is re-batched through the traced batch axis
(planner/model/rebatch.py, tested in tests/model/test_rebatch.py)."""

from __future__ import annotations

from test_app import assert_clean, ctx, goto, run_app  # the explorer's AppTest helpers
from rebatch_models import E, block  # tests/rebatch_models.py: a static export


def test_app_batch_field_rebatches_a_static_upload():
    at = run_app()
    goto(at, "model")
    at.file_uploader(key="mp_upload").upload("static.onnx", block(4, 3).SerializeToString()).run()
    assert_clean(at)
    assert ctx(at).dims == ["batch"]  # a static export gets a batch field
    at.number_input(key="sb_bind_batch").set_value(64).run()
    assert_clean(at)
    c = ctx(at)
    assert c.bindings == {"batch": 64}
    assert c.graph.tensors["x"].shape == (64, 3, E)
