"""One merge of a plan file's recorded options, for the CLI (``evaluate --plan``) and the app."""

from __future__ import annotations

from planner.options import PlanOptions
from planner.plans.plan_json import merge_recorded_options


def test_the_file_records_win_over_the_base_and_the_given_win_over_the_file():
    data = {"options": {"mode": "train", "precision": "bf16", "optimizer": "sgd", "pipeline_stages": 2,
                        "micro_batches": 8, "interleave": 1, "recompute": "full", "zero": 1, "bucket_mb": 10.0,
                        "overlap_gradient_sync": False}}
    base = PlanOptions(precision="fp32", recompute="none", zero=0)
    options, notes = merge_recorded_options(data, base)
    assert (options.precision, options.optimizer, options.pipeline_stages, options.micro_batches) == ("bf16", "sgd", 2, 8)
    assert (options.recompute, options.zero, options.bucket_mb) == ("full", 1, 10.0)
    assert notes == []
    options, notes = merge_recorded_options(data, base, {"precision": "fp16", "zero": None, "overlap_gradient_sync": True})
    assert options.precision == "fp16" and options.zero == 1 and options.overlap_gradient_sync is True
    assert notes == ["--precision fp16 overrides the plan file's bf16", "--overlap-gradient-sync True overrides the "
                     "plan file's False"]


def test_a_file_without_stages_is_one_stage_and_keeps_the_base_otherwise():
    base = PlanOptions(precision="bf16", pipeline_stages=4, micro_batches=16, recompute="selective")
    options, _ = merge_recorded_options({"options": {"zero": 3}}, base)
    assert (options.pipeline_stages, options.micro_batches, options.interleave) == (1, 1, 1)
    assert (options.precision, options.recompute, options.zero) == ("bf16", "selective", 3)
    options, _ = merge_recorded_options({"ops": []}, base)  # nothing recorded at all
    assert (options.pipeline_stages, options.micro_batches, options.recompute) == (1, 1, "selective")
