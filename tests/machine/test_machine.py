"""Tests for planner.machine.tree: presets, the cut schedule, validation and parsing robustness.

Expected numbers are worked out by hand in the comments next to them, not copied from output.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from planner.machine.tree import (
    MAX_DEVICES,
    Cut,
    Device,
    Level,
    Machine,
    MachineError,
    load_machine,
    load_preset,
    preset_paths,
)

# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

A100 = Device("A100", 312e12, 80 * 2**30)


def two_level(node_arity: int = 2, gpu_arity: int = 8) -> Machine:
    return Machine(
        "test",
        A100,
        (Level("node", node_arity, 25e9, 1e-5), Level("gpu", gpu_arity, 300e9, 5e-6)),
    )


def valid_dict() -> dict:
    """A small valid description in the YAML shape, for the mutation tests."""
    return {
        "name": "test",
        "device": {
            "name": "A100",
            "peak_flops": 312e12,
            "memory_bytes": 80e9,
            "compute_efficiency": 1.0,
        },
        "levels": [
            {"name": "node", "arity": 2, "bandwidth_Bps": 25e9, "latency_s": 1e-5},
            {"name": "gpu", "arity": 8, "bandwidth_Bps": 300e9, "latency_s": 5e-6},
        ],
    }


def cut_summary(machine: Machine) -> list[tuple[int, int, str, int]]:
    return [(c.index, c.level, c.level_name, c.factor) for c in machine.cuts()]


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))


# ----------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------

# Device counts by hand: the product of each preset's arities.
EXPECTED_PRESETS = {
    "dgx_a100": 8,  # 8 gpus
    "dgx_a100_64nodes": 512,  # 64 x 8
    "selene": 384,  # 48 x 8
    "h100_cluster": 256,  # 32 x 8
    "h200_cluster": 256,  # 32 x 8
    "v100_8": 8,  # 8 gpus
    "ascend910_16x8": 128,  # 16 x 8
    "a100_512x8": 4096,  # 512 x 8
    "a100_2x8_slow": 16,  # 2 x 8
}


def test_preset_names():
    assert set(preset_paths()) == set(EXPECTED_PRESETS)
    for name, path in preset_paths().items():
        assert path.is_file() and path.stem == name and path.suffix == ".yaml"


@pytest.mark.parametrize("name", sorted(EXPECTED_PRESETS))
def test_preset_loads_and_round_trips(name):
    machine = load_preset(name)
    assert machine.name == name
    assert machine.num_devices == EXPECTED_PRESETS[name]
    assert Machine.from_yaml(machine.to_yaml()) == machine
    assert Machine.from_json(machine.to_json()) == machine
    assert Machine.from_dict(machine.to_dict()) == machine
    # Every preset cites its sources in a comment.
    assert preset_paths()[name].read_text().lstrip().startswith("#")


def test_preset_figures():
    dgx = load_preset("dgx_a100")
    assert dgx.device.peak_flops == 312e12
    assert dgx.device.memory_bytes == 80e9
    assert dgx.levels[0].bandwidth_Bps == 300e9  # 600 GB/s bidirectional / 2
    cluster = load_preset("dgx_a100_64nodes")
    assert [lv.name for lv in cluster.levels] == ["node", "gpu"]
    assert cluster.levels[0].bandwidth_Bps == 25e9  # 200 Gb/s / 8 bits
    assert load_preset("h100_cluster").levels[0].bandwidth_Bps == 50e9  # 400 Gb/s / 8
    # H100 SXM datasheet: FP8 3,958 TFLOP/s with sparsity, dense half; no FP8 on the A100
    assert load_preset("h100_cluster").device.peak_flops_fp8 == 1979e12
    assert dgx.device.peak_flops_fp8 is None
    # H200 SXM datasheet: 141 GB HBM3e at 4.8 TB/s, the H100's compute
    h200 = load_preset("h200_cluster").device
    assert (h200.memory_bytes, h200.memory_bandwidth_Bps, h200.peak_flops, h200.peak_flops_fp8) == \
        (141e9, 4.8e12, 989e12, 1979e12)
    assert load_preset("ascend910_16x8").levels[0].bandwidth_Bps == 12.5e9  # 100 Gb/s / 8
    assert load_preset("a100_2x8_slow").levels[0].bandwidth_Bps == 1.25e9  # 10 Gb/s / 8


def test_load_preset_accepts_suffix_and_rejects_unknown():
    assert load_preset("dgx_a100.yaml") == load_preset("dgx_a100")
    with pytest.raises(MachineError, match="dgx_a100"):  # lists the available presets
        load_preset("no_such_machine")


# ----------------------------------------------------------------------------------------------
# Cuts
# ----------------------------------------------------------------------------------------------


def test_cuts_16x8():
    machine = two_level(16, 8)
    # 16 = 2^4 on level 0, then 8 = 2^3 on level 1.
    assert cut_summary(machine) == [
        (0, 0, "node", 2),
        (1, 0, "node", 2),
        (2, 0, "node", 2),
        (3, 0, "node", 2),
        (4, 1, "gpu", 2),
        (5, 1, "gpu", 2),
        (6, 1, "gpu", 2),
    ]
    assert machine.num_devices == 128


@pytest.mark.parametrize(
    "arity, factors",
    [(6, (2, 3)), (12, (2, 2, 3)), (1, ()), (7, (7,)), (9, (3, 3)), (30, (2, 3, 5)), (2, (2,))],
)
def test_cuts_factor_one_level(arity, factors):
    machine = Machine("m", A100, (Level("only", arity, 1e9, 0.0),))
    assert tuple(c.factor for c in machine.cuts()) == factors


def test_arity_one_level_adds_no_cut():
    machine = two_level(1, 6)
    assert cut_summary(machine) == [(0, 1, "gpu", 2), (1, 1, "gpu", 3)]
    assert machine.num_devices == 6


def test_cuts_are_cached():
    machine = two_level()
    assert machine.cuts() is machine.cuts()
    # The cache is not part of equality or the constructor fields.
    assert machine == two_level()
    assert hash(machine) == hash(two_level())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=4))
def test_cut_factors_multiply_to_num_devices(arities):
    assume(math.prod(arities) <= MAX_DEVICES)
    levels = tuple(Level(f"l{i}", a, 1e9, 1e-6) for i, a in enumerate(arities))
    machine = Machine("m", A100, levels)
    assert machine.num_devices == math.prod(arities)
    cuts = machine.cuts()
    assert math.prod(c.factor for c in cuts) == machine.num_devices
    assert [c.index for c in cuts] == list(range(len(cuts)))
    assert all(is_prime(c.factor) for c in cuts)
    # Outermost level first, ascending primes within a level, per-level product = arity.
    assert [c.level for c in cuts] == sorted(c.level for c in cuts)
    for i, arity in enumerate(arities):
        factors = [c.factor for c in cuts if c.level == i]
        assert factors == sorted(factors)
        assert math.prod(factors) == arity
        assert all(c.level_name == f"l{i}" for c in cuts if c.level == i)


def test_cut_validates():
    with pytest.raises(MachineError, match="factor"):
        Cut(0, 0, "gpu", 4)
    with pytest.raises(MachineError, match="index"):
        Cut(-1, 0, "gpu", 2)


# ----------------------------------------------------------------------------------------------
# Properties, summary, what-if copies
# ----------------------------------------------------------------------------------------------


def test_derived_quantities():
    assert Device("x", 312e12, 1.0, 0.5).effective_flops == pytest.approx(156e12)
    assert Level("n", 2, 25e9, 0.0).gap_s_per_byte == pytest.approx(4e-11)  # 1 / 25e9


def test_summary():
    assert two_level().summary() == "2 nodes x 8 gpus = 16 devices of A100 (312 TFLOP/s, 80 GiB)"
    derated = two_level().with_device(compute_efficiency=0.5)
    assert "50% efficiency" in derated.summary()
    single = Machine("m", A100, (Level("gpu", 1, 1e9, 0),))
    assert single.summary() == "1 gpu = 1 device of A100 (312 TFLOP/s, 80 GiB)"


def test_with_level_and_with_device():
    machine = two_level()
    slow = machine.with_level(0, bandwidth_Bps=1.25e9)
    assert slow.levels[0].bandwidth_Bps == 1.25e9
    assert slow.levels[0].gap_s_per_byte == pytest.approx(8e-10)  # 1 / 1.25e9
    assert slow.levels[1] == machine.levels[1]
    assert machine.levels[0].bandwidth_Bps == 25e9  # the original is untouched
    assert machine.with_level("gpu", arity=4).num_devices == 8  # 2 x 4
    assert machine.with_level(-1, latency_s=0).levels[1].latency_s == 0.0
    assert machine.with_device(peak_flops="1e15").device.peak_flops == 1e15
    with pytest.raises(MachineError, match=r"levels\[0\]\.bandwidth_Bps"):
        machine.with_level(0, bandwidth_Bps=0)
    with pytest.raises(MachineError, match=r"levels\[1\]\.bandwith_Bps"):
        machine.with_level(1, bandwith_Bps=1e9)  # misspelt: an error, not a no-op
    with pytest.raises(MachineError, match="level index"):
        machine.with_level(2, latency_s=0)
    with pytest.raises(MachineError, match="no level named"):
        machine.with_level("rack", latency_s=0)
    with pytest.raises(MachineError, match=r"device\.compute_efficiency"):
        machine.with_device(compute_efficiency=2)


# ----------------------------------------------------------------------------------------------
# Constructors validate too
# ----------------------------------------------------------------------------------------------


def test_constructors_validate():
    with pytest.raises(MachineError, match="arity"):
        Level("gpu", 2.5, 1e9, 0)
    with pytest.raises(MachineError, match="bandwidth_Bps"):
        Level("gpu", 2, 0, 0)
    with pytest.raises(MachineError, match="latency_s"):
        Level("gpu", 2, 1e9, -1e-6)
    with pytest.raises(MachineError, match="peak_flops"):
        Device("x", -1.0, 1.0)
    with pytest.raises(MachineError, match="compute_efficiency"):
        Device("x", 1.0, 1.0, 0.0)
    with pytest.raises(MachineError, match="levels"):
        Machine("m", A100, ())
    with pytest.raises(MachineError, match="duplicate"):
        Machine("m", A100, (Level("a", 2, 1e9, 0), Level("a", 2, 1e9, 0)))
    with pytest.raises(MachineError, match="devices"):
        Machine("m", A100, (Level("a", 2**10, 1e9, 0), Level("b", 2**11, 1e9, 0)))
    # Integral floats are normalised; a list of levels becomes a tuple (hashable).
    level = Level("gpu", 8.0, 1e9, 0)
    assert level.arity == 8 and isinstance(level.arity, int)
    machine = Machine("m", A100, [level])
    assert isinstance(machine.levels, tuple)
    # Exactly 2**20 devices is allowed (planner/limits.py): 20 cuts of 2.
    big = Machine("m", A100, (Level("a", 2**10, 1e9, 0), Level("b", 2**10, 1e9, 0)))
    assert big.num_devices == MAX_DEVICES == 1_048_576
    assert len(big.cuts()) == 20


# ----------------------------------------------------------------------------------------------
# Parsing: accepted spellings
# ----------------------------------------------------------------------------------------------

GOOD_YAML = """\
name: t
device: {name: A100, peak_flops: 3.12e14, memory_bytes: 80e9}
levels:
  - {name: node, arity: 2, bandwidth_Bps: 25e9, latency_s: 1e-5}
  - {name: gpu, arity: 8.0, bandwidth_Bps: 3.0e+11, latency_s: 0}
"""


def test_yaml_number_spellings():
    # PyYAML reads 3.12e14 and 25e9 as strings (YAML 1.1 needs a dot and a signed exponent).
    assert yaml.safe_load("x: 3.12e14")["x"] == "3.12e14"
    machine = Machine.from_yaml(GOOD_YAML)
    assert machine.device.peak_flops == 312e12
    assert machine.device.memory_bytes == 80e9
    assert machine.device.compute_efficiency == 1.0  # default
    assert machine.levels[0].bandwidth_Bps == 25e9
    assert machine.levels[0].latency_s == 1e-5
    assert machine.levels[1].arity == 8 and isinstance(machine.levels[1].arity, int)
    assert machine.levels[1].bandwidth_Bps == 300e9
    assert machine.num_devices == 16


def test_numeric_strings_and_ints_accepted():
    data = valid_dict()
    data["device"]["peak_flops"] = " 312e12 "
    data["device"]["memory_bytes"] = 80_000_000_000
    data["levels"][0]["arity"] = "2"
    data["levels"][1]["bandwidth_Bps"] = "3e11"
    data["levels"][1]["latency_s"] = 0
    machine = Machine.from_dict(data)
    assert machine == Machine.from_dict(valid_dict()).with_level(1, latency_s=0.0)


def test_json_and_file_loading(tmp_path):
    machine = two_level()
    json_path = tmp_path / "m.json"
    json_path.write_text(machine.to_json())
    assert load_machine(json_path) == machine
    yaml_path = tmp_path / "m.yaml"
    yaml_path.write_text(machine.to_yaml())
    assert load_machine(str(yaml_path)) == machine
    assert json.loads(machine.to_json())["levels"][1]["arity"] == 8


def test_file_errors_name_the_path(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(MachineError, match="missing.yaml"):
        load_machine(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\ndevice: {name: A100, peak_flops: -1, memory_bytes: 1}\nlevels: []\n")
    with pytest.raises(MachineError, match=r"bad\.yaml.*device\.peak_flops"):
        load_machine(bad)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x80garbage")
    with pytest.raises(MachineError, match="binary.yaml"):
        load_machine(binary)


# ----------------------------------------------------------------------------------------------
# Parsing: every kind of invalid field names its path and gives an example
# ----------------------------------------------------------------------------------------------


def _set(path, value):
    def mutate(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path):
    def mutate(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


INVALID = [
    # (id, mutation, field path expected at the start of the message)
    ("name-missing", _delete(["name"]), "name"),
    ("name-int", _set(["name"], 123), "name"),
    ("name-empty", _set(["name"], "  "), "name"),
    ("name-newline", _set(["name"], "a\nb"), "name"),
    ("device-list", _set(["device"], [1, 2]), "device"),
    ("device-missing", _delete(["device"]), "device"),
    ("device-name-missing", _delete(["device", "name"]), "device.name"),
    ("peak-negative", _set(["device", "peak_flops"], -1), "device.peak_flops"),
    ("peak-zero", _set(["device", "peak_flops"], 0), "device.peak_flops"),
    ("peak-bool", _set(["device", "peak_flops"], True), "device.peak_flops"),
    ("peak-text", _set(["device", "peak_flops"], "fast"), "device.peak_flops"),
    ("peak-nan", _set(["device", "peak_flops"], float("nan")), "device.peak_flops"),
    ("peak-inf", _set(["device", "peak_flops"], float("inf")), "device.peak_flops"),
    ("peak-inf-text", _set(["device", "peak_flops"], "1e400"), "device.peak_flops"),
    ("peak-none", _set(["device", "peak_flops"], None), "device.peak_flops"),
    ("peak-list", _set(["device", "peak_flops"], [1e12]), "device.peak_flops"),
    ("peak-tiny", _set(["device", "peak_flops"], 1e-320), "device.peak_flops"),
    ("memory-zero", _set(["device", "memory_bytes"], 0), "device.memory_bytes"),
    ("memory-missing", _delete(["device", "memory_bytes"]), "device.memory_bytes"),
    ("eff-zero", _set(["device", "compute_efficiency"], 0), "device.compute_efficiency"),
    ("eff-above-one", _set(["device", "compute_efficiency"], 1.5), "device.compute_efficiency"),
    ("eff-negative", _set(["device", "compute_efficiency"], -0.1), "device.compute_efficiency"),
    ("fp8-zero", _set(["device", "peak_flops_fp8"], 0), "device.peak_flops_fp8"),
    ("fp8-text", _set(["device", "peak_flops_fp8"], "fast"), "device.peak_flops_fp8"),
    ("fp8-bool", _set(["device", "peak_flops_fp8"], True), "device.peak_flops_fp8"),
    ("device-unknown-key", _set(["device", "compute_eficiency"], 0.5), "device.compute_eficiency"),
    ("levels-missing", _delete(["levels"]), "levels"),
    ("levels-empty", _set(["levels"], []), "levels"),
    ("levels-mapping", _set(["levels"], {"gpu": 8}), "levels"),
    ("level-not-mapping", _set(["levels", 1], 8), "levels[1]"),
    ("arity-fraction", _set(["levels", 1, "arity"], 2.5), "levels[1].arity"),
    ("arity-fraction-text", _set(["levels", 1, "arity"], "2.5"), "levels[1].arity"),
    ("arity-zero", _set(["levels", 1, "arity"], 0), "levels[1].arity"),
    ("arity-negative", _set(["levels", 1, "arity"], -8), "levels[1].arity"),
    ("arity-bool", _set(["levels", 1, "arity"], True), "levels[1].arity"),
    ("arity-text", _set(["levels", 1, "arity"], "eight"), "levels[1].arity"),
    ("arity-huge", _set(["levels", 0, "arity"], 2**21), "levels[0].arity"),
    # 2**10 nodes x 2**11 gpus = 2**21 devices: the second level pushes it over 2**20.
    (
        "too-many-devices",
        lambda d: (_set(["levels", 0, "arity"], 2**10)(d), _set(["levels", 1, "arity"], 2**11)(d)),
        "levels[1].arity",
    ),
    ("bandwidth-zero", _set(["levels", 1, "bandwidth_Bps"], 0), "levels[1].bandwidth_Bps"),
    ("bandwidth-negative", _set(["levels", 0, "bandwidth_Bps"], -25e9), "levels[0].bandwidth_Bps"),
    ("bandwidth-text", _set(["levels", 0, "bandwidth_Bps"], "fast"), "levels[0].bandwidth_Bps"),
    ("bandwidth-tiny", _set(["levels", 0, "bandwidth_Bps"], 1e-320), "levels[0].bandwidth_Bps"),
    ("latency-negative", _set(["levels", 0, "latency_s"], -1e-6), "levels[0].latency_s"),
    ("latency-nan", _set(["levels", 0, "latency_s"], float("nan")), "levels[0].latency_s"),
    ("latency-missing", _delete(["levels", 0, "latency_s"]), "levels[0].latency_s"),
    ("level-name-missing", _delete(["levels", 1, "name"]), "levels[1].name"),
    ("level-name-duplicate", _set(["levels", 1, "name"], "node"), "levels[1].name"),
    ("level-unknown-key", _set(["levels", 0, "bandwidth_GBps"], 25), "levels[0].bandwidth_GBps"),
    ("top-unknown-key", _set(["notes"], "hello"), "notes"),
]


@pytest.mark.parametrize("mutate, path", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_field_names_its_path(mutate, path):
    data = valid_dict()
    mutate(data)
    with pytest.raises(MachineError) as info:
        Machine.from_dict(data)
    message = str(info.value)
    assert message.startswith(path), message
    if "unknown key" in message:
        assert "allowed keys are" in message
    else:
        assert "e.g." in message, message


def test_unknown_key_lists_allowed_keys():
    data = valid_dict()
    data["levels"][0]["bandwith_Bps"] = 1
    with pytest.raises(MachineError) as info:
        Machine.from_dict(data)
    assert "name, arity, bandwidth_Bps, latency_s" in str(info.value)


def test_bandwidth_message_is_helpful():
    data = valid_dict()
    data["levels"][1]["bandwidth_Bps"] = 0
    with pytest.raises(MachineError, match=r"positive number of bytes per second.*e\.g\. 25e9"):
        Machine.from_dict(data)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("- a\n- b\n", "the machine description must be a mapping"),
        ("just a string", "the machine description must be a mapping"),
        ("", "the machine description must be a mapping"),
        ("name: [unclosed\n", "invalid YAML"),
        ("name: a\n  bad: indent\n", "invalid YAML"),
        ("name: a\nname: b\n", "duplicate key"),
        ("date: 2001-02-30\n", "invalid YAML"),  # PyYAML raises a bare ValueError here
        ("!!python/object:os.system {}\n", "invalid YAML"),
        (GOOD_YAML.replace("latency_s: 0}", "latency_s: .nan}"), "levels[1].latency_s"),
        (GOOD_YAML.replace("arity: 2,", "arity: yes,"), "levels[0].arity"),
    ],
)
def test_invalid_yaml_text(text, fragment):
    with pytest.raises(MachineError) as info:
        Machine.from_yaml(text)
    assert fragment in str(info.value)


def test_yaml_alias_bomb_is_rejected_cheaply():
    # 10^9 leaves through nested aliases: small text, enormous if the message repr'd it whole.
    anchors = "".join(
        f"- &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi")
    )
    text = (
        "name: m\ndevice: {name: d, peak_flops: 1e12, memory_bytes: 1e9}\n"
        "levels:\n- &a [q, q, q, q, q, q, q, q, q, q]\n" + anchors
    )
    with pytest.raises(MachineError, match=r"^levels\[0\] must be a mapping"):
        Machine.from_yaml(text)


@pytest.mark.parametrize("text", ["{", "[1, 2]", '{"name": NaN}', "1" * 5000, b"\xff"])
def test_invalid_json_text(text):
    with pytest.raises(MachineError):
        Machine.from_json(text)


def test_non_text_input():
    with pytest.raises(MachineError):
        Machine.from_yaml(42)  # type: ignore[arg-type]
    with pytest.raises(MachineError):
        Machine.from_json(None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Robustness: any input gives a Machine or a MachineError, never anything else
# ----------------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["3.12e14", "8", "8.0", "2.5", "-1", "nan", "inf", "1e-320", "", " 25e9 "]),
)
nested = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), children, max_size=5),
    ),
    max_leaves=20,
)
FIELD_PATHS = [
    ["name"],
    ["device"],
    ["device", "name"],
    ["device", "peak_flops"],
    ["device", "memory_bytes"],
    ["device", "compute_efficiency"],
    ["device", "peak_flops_fp8"],
    ["levels"],
    ["levels", 0],
    ["levels", 1, "name"],
    ["levels", 0, "arity"],
    ["levels", 1, "arity"],
    ["levels", 0, "bandwidth_Bps"],
    ["levels", 1, "latency_s"],
    ["device", "extra"],
    ["levels", 0, "extra"],
]


def _accept(parse, value) -> Machine | None:
    """Run ``parse(value)``: a valid Machine or a MachineError are the only allowed outcomes."""
    try:
        machine = parse(value)
    except MachineError as exc:
        assert str(exc)
        return None
    assert isinstance(machine, Machine)
    # Anything accepted is sane and survives a round trip.
    assert 1 <= machine.num_devices <= MAX_DEVICES
    assert math.prod(c.factor for c in machine.cuts()) == machine.num_devices
    assert 0 < machine.device.compute_efficiency <= 1
    assert all(lv.bandwidth_Bps > 0 and lv.latency_s >= 0 for lv in machine.levels)
    assert Machine.from_yaml(machine.to_yaml()) == machine
    assert Machine.from_json(machine.to_json()) == machine
    return machine


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_yaml_text(text):
    _accept(Machine.from_yaml, text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_random_bytes(data):
    _accept(Machine.from_yaml, data)
    _accept(Machine.from_json, data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(GOOD_YAML.splitlines(keepends=True) + ["- x\n", ": :\n", "  "])))
def test_shuffled_yaml_lines(lines):
    # Recombined lines of a valid file reach much deeper into validation than random text.
    _accept(Machine.from_yaml, "".join(lines))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nested)
def test_random_nested_data(data):
    _accept(Machine.from_dict, data)
    _accept(Machine.from_json, json.dumps(data))
    try:
        text = yaml.safe_dump(data)
    except yaml.YAMLError:
        return
    _accept(Machine.from_yaml, text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(FIELD_PATHS), nested), min_size=1, max_size=3))
def test_random_field_values(replacements):
    data = valid_dict()
    for path, value in replacements:
        target = data
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = copy.deepcopy(value)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier replacement changed the shape; that is fine
    _accept(Machine.from_dict, data)
    try:
        text = yaml.safe_dump(data)
    except yaml.YAMLError:
        return
    _accept(Machine.from_yaml, text)


machines = st.builds(
    Machine,
    name=st.text(min_size=1, max_size=10).filter(lambda s: s.strip() and s.isprintable()),
    device=st.builds(
        Device,
        name=st.sampled_from(["A100", "H100", "npu 910", "Gerät"]),
        peak_flops=st.floats(1e9, 1e18),
        memory_bytes=st.floats(1e6, 1e13),
        compute_efficiency=st.floats(0.01, 1.0),
    ),
    levels=st.lists(
        st.builds(
            Level,
            name=st.text("abcxyz_", min_size=1, max_size=6),
            arity=st.integers(1, 16),
            bandwidth_Bps=st.floats(1e6, 1e13),
            latency_s=st.floats(0, 1e-2),
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda lv: lv.name,
    ),
)


@settings(max_examples=200, deadline=None)
@given(machines)
def test_random_machines_round_trip(machine):
    assert Machine.from_yaml(machine.to_yaml()) == machine
    assert Machine.from_json(machine.to_json()) == machine
    assert Machine.from_dict(machine.to_dict()) == machine
    assert machine.summary().startswith(f"{machine.levels[0].arity} {machine.levels[0].name}")


def test_fp8_peak_is_optional_round_trips_and_can_be_removed():
    machine = load_preset("h100_cluster")
    assert Machine.from_yaml(machine.to_yaml()).device.peak_flops_fp8 == 1979e12
    assert "FP8 1.979 PFLOP/s" in machine.summary()
    plain = machine.with_device(peak_flops_fp8=None)
    assert plain.device.peak_flops_fp8 is None and "peak_flops_fp8" not in plain.to_dict()["device"]
    assert "FP8" not in plain.summary()
    assert plain.with_device(peak_flops_fp8="2e15").device.peak_flops_fp8 == 2e15  # YAML 1.1 spelling
