"""The session: the ONLY module that reads or writes ``st.session_state``.

What a session holds (the model and its uploaded bytes, the bound dimensions, the machine and its
label, the options, the hand-made configuration, the messages waiting to be shown) changes only
through the typed transitions here: :func:`use_model`, :func:`use_machine` (written once: a new
machine gets fresh editors and clears the old machine's errors), :func:`set_binding`,
:func:`set_option`, :func:`set_hand_made`. The widgets' callbacks
(``on_*``) read their widget's value and call one of them. Widget keys and their values are seeded
through :func:`seed`, so pages and the sidebar never touch the session state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from explorer import upload as app_upload
from explorer.options import option_from_widget, options_with
from explorer.sources import DEFAULT_MACHINE, DEFAULT_SAMPLE, ModelSource, sample_source
from explorer.url_state import decode_url_state
from explorer.views.machine import apply_editor_state, levels_frame, machine_from_levels, machine_with_device, same_levels
from planner.api import PlanOptions
from planner.bindings import binding_problem
from planner.options import OptionsError
from planner.machine.tree import Machine, MachineError, load_preset
from planner.onnx.importer import ModelImportError
from planner.search.hand_made import HandMade

_ss = st.session_state


# ---- reading ---------------------------------------------------------------------------------

def source() -> ModelSource:
    return _ss.source


def upload_bytes() -> bytes | None:
    return _ss.upload_bytes


def bindings() -> dict[str, int]:
    return dict(_ss.bindings)


def machine() -> Machine:
    return _ss.machine


def machine_label() -> str:
    return _ss.machine_label


def options() -> PlanOptions:
    return _ss.options


def hand_made() -> HandMade | None:
    """The sidebar's hand-made configuration (priced on the Compare page), or None."""
    return _ss.get("hand_made")


def machine_version() -> int:
    """Bumped by every new machine: the machine's editors carry it in their keys."""
    return _ss.get("machine_version", 0)


def get(key: str, default: Any = None) -> Any:
    """A widget's value by its key."""
    return _ss.get(key, default)


def seed(key: str, value: Any) -> None:
    """Set the value a widget shows at this run (the model, machine or option in use)."""
    _ss[key] = value


# ---- the first run ---------------------------------------------------------------------------

def init(query_params: Mapping[str, Any]) -> None:
    """First run of a session: the URL's model, machine and options, or the defaults."""
    if _ss.get("_init"):
        return
    url, problems = decode_url_state(dict(query_params))
    try:
        _ss.source = sample_source(url.model)
    except ModelImportError as exc:
        problems.append(str(exc))
        _ss.source = sample_source(DEFAULT_SAMPLE)
    _ss.upload_bytes = None
    _ss.bindings = dict(url.bindings)
    _ss.url_link_bindings = dict(url.bindings) if "bind" in query_params else None
    try:
        if url.machine is not None:
            _ss.machine, _ss.machine_label = Machine.from_dict(url.machine), "custom"
        else:
            _ss.machine, _ss.machine_label = load_preset(url.machine_preset), url.machine_preset
    except MachineError as exc:
        problems.append(str(exc))
        _ss.machine, _ss.machine_label = load_preset(DEFAULT_MACHINE), DEFAULT_MACHINE
    _ss.options = url.options
    _ss.hand_made = url.hand_made
    _ss.url_problems = problems
    _ss.machine_version = 0
    _ss._init = True


def pop_link_bindings() -> dict[str, int] | None:
    """The bindings a link gave, once (to warn about names the model lacks)."""
    return _ss.pop("url_link_bindings", None)


def url_problems() -> list[str]:
    return list(_ss.get("url_problems", []))


def add_url_problem(problem: str) -> None:
    _ss.url_problems = [*url_problems(), problem]


# ---- transitions -----------------------------------------------------------------------------

def use_model(new: ModelSource, data: bytes | None = None, new_bindings: dict[str, int] | None = None) -> None:
    """Make ``new`` the model in use (``data``: an upload's weight-free bytes)."""
    _ss.source, _ss.upload_bytes, _ss.upload_error = new, data, None
    if new_bindings is not None:
        _ss.bindings = dict(new_bindings)


def set_bindings(values: dict[str, int]) -> None:
    _ss.bindings = dict(values)


def set_binding(dim: str, value) -> None:
    """Bind one symbolic dimension (values below 1 or not numbers are ignored); a value above
    the limit keeps the binding in use and leaves a message for the sidebar (:func:`pop_option_error`)."""
    if isinstance(value, (int, float)) and value >= 1:
        if (problem := binding_problem(dim, int(value))) is not None:
            _ss.option_error = f"Not changed: {problem}."
            return
        _ss.bindings = {**_ss.bindings, dim: int(value)}


def set_option(field: str, value) -> None:
    """Apply one plan option as a widget gives it (``auto``: left to the search); options that
    do not go together (pipeline stages in inference) keep the options in use and leave a
    message for the sidebar (:func:`pop_option_error`)."""
    if value is None and field == "mode":  # a segmented control can be deselected: keep the option
        return
    changes = {field: option_from_widget(field, value)}
    if changes == {"mode": "infer"}:  # an inference pass is planned as one stage and one micro-batch
        changes.update(pipeline_stages=None, micro_batches=None, interleave=1)
    try:
        _ss.options = options_with(_ss.options, **changes)
    except OptionsError as exc:
        _ss.option_error = f"Not changed: {exc}."


def set_hand_made(config: HandMade | None) -> None:
    """Use ``config`` as the hand-made configuration (None: none). Its degrees are checked against
    the machine where it is shown (the sidebar) and priced on the Compare page, which say what is wrong."""
    _ss.hand_made = config


def pop_option_error() -> str | None:
    return _ss.pop("option_error", None)


def use_machine(new: Machine, label: str) -> None:
    """Make ``new`` the machine in use: fresh editors for it, and the old machine's errors gone.
    The plan of the machine it replaces is kept (:func:`machine_before`) for the Machine page's
    before and after."""
    previous = _ss.get("_ctx")
    if previous is not None and getattr(previous, "result", None) is not None:
        _ss.machine_before = {"label": _ss.machine_label, "machine": _ss.machine, "result": previous.result}
    _ss.machine, _ss.machine_label = new, label
    _ss.machine_version = machine_version() + 1
    _ss.machine_errors = {}


def machine_before() -> dict | None:
    """The machine in use before the last change and its plan (``label``, ``machine``, ``result``),
    or None when the machine has not changed (or had no plan)."""
    return _ss.get("machine_before")


def machine_failed(where: str, message: str) -> None:
    """A machine edit that is not a valid machine: the machine in use stays, the message is shown."""
    _ss.machine_errors = {**_ss.get("machine_errors", {}), where: message}


def apply_level_edits() -> None:
    """Apply the Machine page's levels table, whose edits are in the session state at the start
    of a run (the editor's key carries the machine version, so each edit is applied once: the
    new machine gets a fresh editor). An invalid table keeps the machine and leaves a message."""
    edits = _ss.get(f"mc_levels_{machine_version()}")
    errors = {k: v for k, v in _ss.get("machine_errors", {}).items() if k != "levels"}
    _ss.machine_errors = errors
    if not edits:
        return
    edited = apply_editor_state(levels_frame(_ss.machine), edits)
    if same_levels(edited, _ss.machine):
        return
    try:
        new = machine_from_levels(_ss.machine, edited)
    except MachineError as exc:
        _ss.machine_errors = {**errors, "levels": f"Levels not applied: {exc}. The other pages keep using the last "
                                                  "valid machine."}
    else:
        use_machine(new, "custom")


def machine_page_errors() -> dict[str, str]:
    """The Machine page's messages, without those about a field the user has since left (another
    page, a cleared upload)."""
    errors = dict(_ss.get("machine_errors", {}))
    if f"mc_dev_eff_{machine_version()}" not in _ss:
        errors.pop("device", None)
    if _ss.get("mc_upload") is None:
        errors.pop("yaml", None)
    _ss.machine_errors = errors
    return errors


# ---- widget callbacks ------------------------------------------------------------------------

def on_binding(dim: str, key: str) -> None:
    set_binding(dim, _ss.get(key))


def on_option(field: str, key: str) -> None:
    set_option(field, _ss.get(key))


#: The hand-made configuration's widget keys in the sidebar, by HandMade field.
HAND_MADE_KEYS = {"tp": "sb_hm_tp", "pp": "sb_hm_pp", "dp": "sb_hm_dp", "ep": "sb_hm_ep", "cp": "sb_hm_cp",
                  "micro_batch_size": "sb_hm_mbs", "interleave": "sb_hm_interleave"}


def on_hand_made() -> None:
    """The hand-made toggle or one of its fields changed: the configuration the widgets show (a
    field left empty counts as 1), or None when the toggle is off."""
    if not _ss.get("sb_hm_on"):
        set_hand_made(None)
        return
    if hand_made() is None:  # just switched on: pure data parallelism over the machine, to edit
        set_hand_made(HandMade(dp=_ss.machine.num_devices))
        return
    values = {name: _ss.get(key) for name, key in HAND_MADE_KEYS.items()}
    set_hand_made(HandMade(**{name: int(v) if isinstance(v, (int, float)) and v >= 1 else 1
                              for name, v in values.items()}))


def on_sample(key: str) -> None:
    name = _ss.get(key)
    if name:
        use_model(sample_source(name))


def upload_key() -> str:
    """The model uploader's key: a new one after every upload, so that the uploader is empty
    again and the next file is an addition. (Replacing the file a single-file uploader holds
    takes two runs, one without a file and one with the new file; when the new file arrives
    during the first run, Streamlit can drop it as orphaned and the upload is silently lost.)"""
    n = _ss.get("upload_nonce", 0)
    return "mp_upload" if n == 0 else f"mp_upload_{n}"


def on_model_upload(key: str, cache) -> None:
    """Import the uploaded file before the run (so the sidebar and the plan use it at once); a
    file that is not a model leaves the model in use unchanged and says why. The weights are
    dropped on the way (explorer.upload): the session keeps the model's shapes only."""
    upload = _ss.get(key)
    if upload is None:
        return
    name = upload.name
    try:
        new, data, new_bindings = app_upload.accept_upload(name, upload.getvalue(), cache, _ss.bindings)
    except ModelImportError as exc:
        _ss.upload_error = f"{name}: {exc}"
    except Exception as exc:  # noqa: BLE001 - whatever a malformed file triggers, the user sees a message
        _ss.upload_error = (f"{name} could not be read as an ONNX model ({type(exc).__name__}: {exc}); "
                            "export it again with torch.onnx.export or check the file")
    else:
        use_model(new, data, new_bindings)
    _ss.upload_nonce = _ss.get("upload_nonce", 0) + 1  # an empty uploader for the next file


def upload_error() -> str | None:
    return _ss.get("upload_error")


def on_preset(key: str) -> None:
    name = _ss.get(key)
    if name:
        try:
            use_machine(load_preset(name), name)
        except MachineError as exc:
            machine_failed("preset", str(exc))


def on_device_edit(version: int) -> None:
    try:
        new = machine_with_device(_ss.machine, _ss[f"mc_dev_name_{version}"], _ss[f"mc_dev_peak_{version}"],
                                  _ss[f"mc_dev_mem_{version}"], _ss[f"mc_dev_eff_{version}"])
    except MachineError as exc:
        machine_failed("device", f"Device not changed: {exc}")
    else:
        use_machine(new, "custom")


def on_machine_upload(key: str) -> None:
    up = _ss.get(key)
    if up is None:
        return
    text = up.getvalue()
    try:
        new = Machine.from_json(text) if up.name.endswith(".json") else Machine.from_yaml(text)
    except MachineError as exc:
        machine_failed("yaml", f"{up.name}: {exc} — the machine in use is unchanged.")
    else:
        use_machine(new, "custom")


# ---- the run's context and results kept for the session --------------------------------------

def set_context(ctx) -> None:
    """The context of this run (``_ctx``: tests and benchmarks read it)."""
    _ss["_ctx"] = ctx


def context():
    return _ss["_ctx"]


def mark_app_ran() -> None:
    _ss["_app_ran"] = True


def pop_app_ran() -> bool:
    return bool(_ss.pop("_app_ran", False))


def verification_rows() -> list[dict] | None:
    return _ss.get("verification_rows")


def set_verification_rows(rows: list[dict]) -> None:
    _ss.verification_rows = rows
