"""planner.search.hand_made: the checks of a hand-made configuration's degrees (evaluate's one-line
messages), its name, and which degrees a model offers."""

from __future__ import annotations

import pytest

from planner.onnx.importer import import_model
from planner.options import ConfigError
from planner.search.hand_made import HandMade, check_hand_made, check_layout, offered


def test_the_name_in_the_engineers_terms():
    assert HandMade(tp=2, dp=8, ep=4).label() == "DP 8 x TP 2 x PP 1 x EP 4 (micro-batch 1)"
    assert HandMade(tp=8, pp=4, dp=2, cp=2, micro_batch_size=2, interleave=3).label() == \
        "DP 2 x TP 8 x PP 4 x CP 2 (micro-batch 2, interleave 3)"


@pytest.mark.parametrize("degrees, devices, message", [
    ((2, 1, 2), 8, "--tp x --pp x --dp = 2 x 1 x 2 = 4, but the machine has 8 devices"),
    ((2, 1, 2, 4), 8, "--tp x --pp x --dp x --cp = 2 x 1 x 2 x 4 = 16, but the machine has 8 devices"),
    ((1, 1, 2, 4, 3), 8, "--ep 3 does not divide --dp x --cp = 2 x 4 = 8"),
    ((0, 1, 8), 8, "--tp must be a whole number >= 1, not 0"),
])
def test_bad_degrees_are_refused_saying_what_to_change(degrees, devices, message):
    tensor, pipeline, data, *rest = degrees
    with pytest.raises(ConfigError, match="^" + message.replace("+", r"\+")):
        check_layout(tensor, pipeline, data, devices, *rest)


def test_good_degrees_pass():
    check_layout(2, 2, 2, 8)  # 2 x 2 x 2 = 8
    check_layout(2, 1, 2, 8, context=2, expert=4)  # EP 4 divides DP x CP = 4
    check_hand_made(HandMade(tp=4, dp=2), 8)
    with pytest.raises(ConfigError, match="--micro-batch-size must be a whole number >= 1, not 0"):
        check_hand_made(HandMade(dp=8, micro_batch_size=0), 8)


def test_ep_is_offered_with_experts_and_cp_with_a_sequence():
    assert offered(import_model("sample_models/moe.onnx", {"batch": 8}, "moe")) == (True, False)  # no sequence
    assert offered(import_model("sample_models/gpt2_small.onnx", {"batch": 8, "seq": 32}, "gpt2")) == (False, True)
    assert offered(import_model("sample_models/mlp.onnx", {"batch": 8}, "mlp")) == (False, False)
