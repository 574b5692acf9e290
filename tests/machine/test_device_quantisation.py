"""The device fields of shape-aware efficiency (tile_rows, tile_cols, multiprocessors) and the
presets' efficiency: parsing, one-line messages for bad values, datasheet values in the presets."""

from __future__ import annotations

import pytest

from planner.machine.tree import Machine, MachineError, load_preset, preset_paths


def _data(**device):
    return {"name": "m", "device": {"name": "A100", "peak_flops": 312e12, "memory_bytes": 80e9, **device},
            "levels": [{"name": "gpu", "arity": 8, "bandwidth_Bps": 300e9, "latency_s": 5e-6}]}


TILES = {"tile_rows": 256, "tile_cols": 128, "multiprocessors": 108}


def test_fields_parse_from_yaml_spellings_and_round_trip():
    m = Machine.from_yaml("name: m\ndevice: {name: A100, peak_flops: 312e12, memory_bytes: 80e9, tile_rows: '256',"
                          " tile_cols: 128.0, multiprocessors: 108}\n"
                          "levels: [{name: gpu, arity: 8, bandwidth_Bps: 300e9, latency_s: 5e-6}]\n")
    assert (m.device.tile_rows, m.device.tile_cols, m.device.multiprocessors) == (256, 128, 108)
    assert Machine.from_dict(m.to_dict()) == m
    bare = m.with_device(tile_rows=None, tile_cols=None, multiprocessors=None)
    assert bare.device.multiprocessors is None and "multiprocessors" not in bare.to_dict()["device"]


@pytest.mark.parametrize("field, value, why", [
    ("tile_rows", 0, "must be >= 1"),
    ("tile_cols", 2048, "more than 1024"),
    ("multiprocessors", 12.5, "not a whole number"),
    ("multiprocessors", True, "a boolean is not a number"),
    ("tile_rows", "wide", "not a number"),
])
def test_bad_values_name_the_field_and_an_example(field, value, why):
    with pytest.raises(MachineError) as err:
        Machine.from_dict(_data(**{**TILES, field: value}))
    message = str(err.value)
    assert message.startswith(f"device.{field} must be a whole number") and why in message
    assert "e.g." in message and "\n" not in message


def test_the_three_fields_go_together():
    with pytest.raises(MachineError, match=r"^device\.tile_rows must be .*go together"):
        Machine.from_dict(_data(multiprocessors=108))


def test_every_preset_is_below_peak_and_has_its_datasheet_multiprocessors():
    sms = {"A100": 108, "H100": 132, "H200": 132, "V100": 80, "Ascend910": 32}
    for name in preset_paths():
        device = load_preset(name).device
        assert 0 < device.compute_efficiency < 1, name
        assert device.multiprocessors == next(v for k, v in sms.items() if device.name.startswith(k)), name
        assert (device.tile_rows, device.tile_cols) == (256, 128), name
