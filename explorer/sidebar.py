"""The sidebar: what everything depends on (model, bound dimensions, machine, mode, algorithm,
precision, optimizer, and under *Pipeline and memory* the stages, micro-batches, recomputation,
ZeRO, interleaving, the gradient bucket, the overlaps and sequence parallelism; under *Hand-made
configuration* the TP, PP, DP, EP and CP degrees the Compare page prices). Each widget shows the value
in use (:func:`explorer.state.seed`) and changes it through :mod:`explorer.state`'s callbacks.
"""

from __future__ import annotations

import streamlit as st

from explorer import hand_made, state
from explorer.cache import PlanCache
from explorer.options import AUTO, MODES, OVERLAP_TOGGLES, stage_choices
from explorer.safe_markdown import md_code, md_text
from explorer.sources import bindings_for
from explorer.url_state import unknown_bindings_message
from explorer.views.machine import machine_label_text
from planner.api import ALGORITHMS, PlanOptions
from planner.options import OPTIMIZERS, OVERLAPS, PRECISION_BYTES, RECOMPUTE, ZERO_STAGES
from planner.onnx.importer import ModelImportError


def draw(cache: PlanCache) -> tuple[list[str], str | None]:
    """Draw the sidebar; returns the model's symbolic dimensions and, when it cannot be read,
    the importer's message."""
    sb = st.sidebar
    source = state.source()
    dims, model_error = [], None
    try:
        dims = cache.symbolic_dims(source, state.upload_bytes())
    except ModelImportError as exc:
        model_error = str(exc)
    link_bindings = state.pop_link_bindings()
    if link_bindings and dims and (unknown := unknown_bindings_message(link_bindings, dims)):
        state.add_url_problem(unknown)
    state.set_bindings(bindings_for(dims, state.bindings()))
    sb.markdown(f"**Model** {md_code(source.label)}" + (" (uploaded)" if source.kind == "upload" else ""),
                help=f"sha256 {source.sha256}")
    _bindings(dims)
    machine = state.machine()
    sb.markdown(f"**Machine** {md_code(machine_label_text(machine, state.machine_label()))}  \n{machine.num_devices:,} devices: "
                + " x ".join(f"{lv.arity} {md_text(lv.name)}" for lv in machine.levels))
    options = state.options()
    for key, value in (("sb_mode", options.mode), ("sb_algorithm", options.algorithm),
                       ("sb_precision", options.precision or "model"), ("sb_optimizer", options.optimizer)):
        state.seed(key, value)
    sb.segmented_control("Mode", list(MODES), key="sb_mode", on_change=state.on_option, args=("mode", "sb_mode"),
                         help="train: forward + backward, gradients and optimizer state; infer: forward only")
    sb.selectbox("Algorithm", list(ALGORITHMS), key="sb_algorithm", on_change=state.on_option,
                 args=("algorithm", "sb_algorithm"), help="\n\n".join(f"**{k}**: {v}" for k, v in ALGORITHMS.items()))
    c1, c2 = sb.columns(2)
    c1.selectbox("Precision", ["model", *PRECISION_BYTES], key="sb_precision", on_change=state.on_option,
                 args=("precision", "sb_precision"), format_func=lambda p: "model's" if p == "model" else p,
                 help="bytes of float tensors; model's: as in the model, the types of the ONNX file kept")
    c2.selectbox("Optimizer", list(OPTIMIZERS), key="sb_optimizer", on_change=state.on_option,
                 args=("optimizer", "sb_optimizer"), help="sets the optimizer state in memory (train mode)")
    _pipeline_options(options)
    _hand_made(cache)
    if (error := state.pop_option_error()):
        sb.error(md_text(error))
    return dims, model_error


def _bindings(dims: list[str]) -> None:
    """One number field per symbolic dimension (the batch is the global batch)."""
    if not dims:
        st.sidebar.caption("no symbolic dimensions: every input shape is fixed")
        return
    values = state.bindings()
    cols = st.sidebar.columns(min(len(dims), 3))
    for i, dim in enumerate(dims):
        key = f"sb_bind_{dim}"
        state.seed(key, values[dim])
        cols[i % len(cols)].number_input(
            f"{md_text(dim)} (global)" if dim == "batch" else md_text(dim), min_value=1, step=1, key=key,
            on_change=state.on_binding, args=(dim, key),
            help="the global batch: split across devices by the plan" if dim == "batch" else "symbolic dimension")


def _or_auto(value):
    """A selectbox's value for an option the search may choose (None)."""
    return AUTO if value is None else value


def _pipeline_options(options: PlanOptions) -> None:
    """Stages, micro-batches, recomputation, ZeRO, interleaving and overlap: ``auto`` leaves one to
    the configuration search (drec and drec+; the other algorithms take 1 stage, no recomputation
    and ZeRO 0). A combination that does not fit the model or the machine is reported by the
    planner, on the page."""
    for key, value in (("sb_stages", _or_auto(options.pipeline_stages)), ("sb_micro_batches", options.micro_batches),
                       ("sb_recompute", _or_auto(options.recompute)), ("sb_zero", _or_auto(options.zero)),
                       ("sb_interleave", options.interleave), ("sb_bucket_mb", options.bucket_mb),
                       ("sb_sequence_parallel", options.sequence_parallel),
                       *((key, getattr(options, name)) for _, name, key in OVERLAP_TOGGLES)):
        state.seed(key, value)
    infer = options.mode == "infer"
    box = st.sidebar.expander("Pipeline and memory", icon=":material/view_timeline:")
    if infer:
        box.caption("for training: an inference pass is planned as one stage and one micro-batch")
    (stages, micro), (recompute, zero), (interleave, _) = (box.columns(2) for _ in range(3))
    stages.selectbox("Pipeline stages", stage_choices(state.machine(), options.pipeline_stages), key="sb_stages",
                     format_func=str, on_change=state.on_option, args=("pipeline_stages", "sb_stages"), disabled=infer,
                     help="consecutive layers on disjoint groups of devices along the outermost machine levels; "
                          "auto: drec and drec+ try the counts the machine allows and keep the fastest that fits "
                          "in memory")
    micro.number_input("Micro-batches", min_value=1, step=1, value=None, placeholder=AUTO, key="sb_micro_batches",
                       on_change=state.on_option, args=("micro_batches", "sb_micro_batches"), disabled=infer,
                       help="per iteration, in the 1F1B schedule; must divide the batch. Empty: auto (1 without "
                            "stages, else enough to fill the pipeline)")
    recompute.selectbox("Recompute", [AUTO, *RECOMPUTE], key="sb_recompute", on_change=state.on_option,
                        args=("recompute", "sb_recompute"), disabled=infer,
                        help="\n\n".join([f"**{AUTO}**: the least that fits in memory"]
                                          + [f"**{k}**: {v}" for k, v in RECOMPUTE.items()]))
    zero.selectbox("ZeRO", [AUTO, *ZERO_STAGES], key="sb_zero", format_func=str, on_change=state.on_option,
                   args=("zero", "sb_zero"), disabled=infer,
                   help="\n\n".join([f"**{AUTO}**: the lowest stage that fits in memory"]
                                     + [f"**{k}**: {v}" for k, v in ZERO_STAGES.items()]))
    interleave.number_input("Interleave", min_value=1, step=1, key="sb_interleave", on_change=state.on_option,
                            args=("interleave", "sb_interleave"), disabled=infer,
                            help="model chunks per device (interleaved 1F1B: a smaller bubble, more sends); needs "
                                 "stages > 1 (on auto, the search tries only those), and micro-batches in multiples "
                                 "of the stages")
    for label, name, key in OVERLAP_TOGGLES:
        box.toggle(label, key=key, on_change=state.on_option, args=(name, key), disabled=infer,
                   help=OVERLAPS[name] + " (planner.cost.overlap: only what the compute cannot hide is exposed; "
                        "tensor-parallel collectives are always exposed)")
    box.toggle("Sequence parallelism", key="sb_sequence_parallel", on_change=state.on_option,
               args=("sequence_parallel", "sb_sequence_parallel"),
               help="with tensor parallelism (the megatron algorithm, and a layout the search may choose): the "
                    "LayerNorm, dropout and residual regions split along the sequence, each all-reduce a "
                    "reduce-scatter plus an all-gather (Korthikanti et al. 2022)")
    box.number_input("Gradient bucket (MB)", min_value=0.0, step=5.0, key="sb_bucket_mb", on_change=state.on_option,
                     args=("bucket_mb", "sb_bucket_mb"), disabled=infer,
                     help="gradients are all-reduced in buckets of this many MB (10^6 bytes), latency paid per "
                          "bucket, as PyTorch DDP's bucket_cap_mb (default 25); 0: one all-reduce per tensor")




#: The hand-made configuration's fields: HandMade field, label (evaluate's flag: its messages name
#: it), help.
HAND_MADE_FIELDS = (
    ("tp", "TP (--tp)", "tensor-parallel size: Megatron's column- then row-parallel linear layers over the "
                        "innermost devices; divides the attention heads"),
    ("pp", "PP (--pp)", "pipeline stages, outermost devices (1F1B)"),
    ("dp", "DP (--dp)", "data-parallel size; TP x PP x DP (x CP) = the devices"),
    ("ep", "EP (--ep)", "expert-parallel size: the experts split over EP of the DP (x CP) ranks; divides DP (x CP) "
                        "and every MoE layer's experts"),
    ("cp", "CP (--cp)", "context-parallel size: ring attention over the sequence in 2 x CP zig-zag chunks"),
    ("micro_batch_size", "Micro-batch size", "samples per micro-batch per data-parallel rank; micro-batch x DP "
                                             "divides the global batch"),
    ("interleave", "Interleave", "model chunks per device (interleaved 1F1B; needs PP > 1)"),
)


def _hand_made(cache: PlanCache) -> None:
    """A Megatron-style configuration the Compare page prices as ``evaluate --tp --pp --dp --ep
    --cp`` does, beside the searched plans; EP only for a model with experts, CP only for one with
    a sequence. Degrees that do not fit the machine get evaluate's message here."""
    config = state.hand_made()
    state.seed("sb_hm_on", config is not None)
    box = st.sidebar.expander("Hand-made configuration (Megatron-style)", icon=":material/tune:",
                              expanded=config is not None)
    box.toggle("Price a hand-made configuration", key="sb_hm_on", on_change=state.on_hand_made,
               help="shown on the Compare page beside the searched plans, priced as evaluate --tp --pp --dp "
                    "--ep --cp prices it (nothing searched)")
    if config is None:
        return
    experts, sequence = hand_made.offers(cache, state.source(), state.bindings(), state.upload_bytes())
    if (fitted := hand_made.within_offer(config, experts, sequence)) != config:
        state.set_hand_made(config := fitted)
    fields = [f for f in HAND_MADE_FIELDS if (f[0] != "ep" or experts) and (f[0] != "cp" or sequence)]
    cols = box.columns(3)
    for i, (name, label, help_text) in enumerate(fields):
        key = state.HAND_MADE_KEYS[name]
        state.seed(key, getattr(config, name))
        cols[i % 3].number_input(label, min_value=1, step=1, key=key, on_change=state.on_hand_made, help=help_text)
    absent = [name for name, offered in (("EP", experts), ("CP", sequence)) if not offered]
    if absent:
        box.caption(" and ".join(absent) + ": not offered (" + "; ".join(
            text for name, text in (("EP", "the model has no experts"), ("CP", "no sequence with attention"))
            if name in absent) + ")")
    if (problem := hand_made.layout_problem(config, state.machine())) is not None:
        box.error(md_text(problem))
    else:
        box.caption(f"{md_text(config.label())}: priced on the Compare page")
