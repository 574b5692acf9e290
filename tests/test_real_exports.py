"""The real-export corpus (tests/real_exports.py) planned with the default command.

Each model is planned as ``python -m planner plan MODEL --machine machines/<preset>.yaml --bind
batch=B --bind seq=S`` would plan it (the CLI's own argument parser, loader and options, then
``plan_model``), on three presets at a large and a small batch: no traceback, no empty stage,
memory and cost finite. One real subprocess per family runs the command itself. For each family
the two exporters must agree on parameters and FLOPs within 1% and on the data-parallel baseline
within 5%, and the parameters must be torch's own count (``named_parameters``).

Failures caused by issue 10's known defects, not fixed on this branch, are ``xfail(strict=True)``
naming the item: the marker turns into a failure the moment the fix lands.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxscript")
pytest.importorskip("transformers")

from real_exports import (  # noqa: E402
    EXAMPLE_SEQ, EXPORTERS, FAMILIES, HF_FAMILIES, ONNX_FAMILIES, QUANT_K, QUANT_N, TORCH_FAMILIES, Corpus,
)

from planner.cli.common import load_graph, load_machine, plan_options  # noqa: E402
from planner.cli.main import build_parser  # noqa: E402
from planner.onnx.rebinder import rebinder_for  # noqa: E402
from planner.api import plan_model  # noqa: E402
from planner.model.graph import TensorRole  # noqa: E402
from planner.onnx.importer import import_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("dgx_a100", "a100_2x8_slow", "dgx_a100_64nodes")  # 8, 16 and 512 devices
BATCHES = (512, 16)
SEQ = 128
TWO_EXPORTERS = HF_FAMILIES + TORCH_FAMILIES


@pytest.fixture(scope="session")
def corpus(real_corpus):  # tests/conftest.py: one corpus per session
    return real_corpus


def _xfail(reason: str):
    return pytest.mark.xfail(strict=True, reason=reason)



# (family, exporter, preset, batch) -> reason. Empty since issue 10 item 1 (cut points among
# weight-only operators: GPT-2, T5 and the quantised models ended in a traceback) was merged.
PLAN_XFAIL: dict[tuple, str] = {}


def _plan_cases():
    for family in FAMILIES:
        for exporter in (("onnx",) if family in ONNX_FAMILIES else EXPORTERS):
            for preset in PRESETS:
                for batch in BATCHES:
                    marks = [_xfail(PLAN_XFAIL[(family, exporter, preset, batch)])] \
                        if (family, exporter, preset, batch) in PLAN_XFAIL else []
                    yield pytest.param(family, exporter, preset, batch, marks=marks,
                                       id=f"{family}-{exporter}-{preset}-b{batch}")


_PLANS: dict[tuple, object] = {}


def _plan(corpus: Corpus, family: str, exporter: str, preset: str, batch: int, seq: int = SEQ):
    """The default plan command's result (computed once per session)."""
    key = (family, exporter, preset, batch, seq)
    if key not in _PLANS:
        export = corpus.get(family, exporter)
        argv = ["plan", str(export.path), "--machine", str(ROOT / "machines" / f"{preset}.yaml")]
        for name, value in export.bindings(batch, seq).items():
            argv += ["--bind", f"{name}={value}"]
        args = build_parser().parse_args(argv)
        _PLANS[key] = plan_model(load_graph(args), load_machine(args.machine), plan_options(args),
                                 rebinder=rebinder_for(export.path))
    return _PLANS[key]


@pytest.mark.parametrize("family,exporter,preset,batch", list(_plan_cases()))
def test_default_plan(corpus, family, exporter, preset, batch):
    result = _plan(corpus, family, exporter, preset, batch)
    sched = result.schedule
    assert math.isfinite(result.total_seconds) and result.total_seconds > 0
    assert math.isfinite(result.data_parallel_seconds) and result.data_parallel_seconds > 0
    assert math.isfinite(result.memory.peak) and result.memory.peak > 0
    if sched.stages > 1:
        working = {name for name, op in result.graph.operators.items() if op.flops > 0}
        used = {stage for name, stage in sched.stage_of_op.items() if name in working}
        assert used == set(range(sched.stages)), f"stages without a computing operator: {set(range(sched.stages)) - used}"


SUBPROCESS_XFAIL: dict[str, str] = {}  # GPT-2, T5 and the quantised models until issue 10 item 1


@pytest.mark.parametrize("family", [pytest.param(f, marks=[_xfail(SUBPROCESS_XFAIL[f])] if f in SUBPROCESS_XFAIL else [])
                                    for f in FAMILIES])
def test_default_command_in_a_subprocess(corpus, family):
    """The command itself, batch 512: exit 0 and no traceback. GPT-2 on the issue's 512 devices;
    the others on one DGX (their 512-device plans are made in-process by test_default_plan, so a
    subprocess only adds the command line's own wiring, which one DGX exercises as well)."""
    exporter = "onnx" if family in ONNX_FAMILIES else "dynamo"
    export = corpus.get(family, exporter)
    preset = "dgx_a100_64nodes" if family == "gpt2" else "dgx_a100"
    cmd = [sys.executable, "-m", "planner", "plan", str(export.path), "--machine",
           str(ROOT / "machines" / f"{preset}.yaml")]
    for name, value in export.bindings(512, SEQ).items():
        cmd += ["--bind", f"{name}={value}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "iteration" in proc.stdout and "memory" in proc.stdout


# ---- the two exporters agree, and agree with torch --------------------------------------------

def _graph(corpus, family, exporter, batch=4, seq=SEQ):
    export = corpus.get(family, exporter)
    return import_model(export.path, export.bindings(batch, seq))


@pytest.mark.parametrize("family", TWO_EXPORTERS)
@pytest.mark.parametrize("exporter", EXPORTERS)
def test_parameters_are_torchs_count(corpus, family, exporter):
    """Tied weights (GPT-2's and T5's lm_head) once, lifted buffers (Llama's inv_freq, the
    attention scale) not at all: exactly ``sum(p.numel() for p in module.parameters())``."""
    export = corpus.get(family, exporter)
    assert _graph(corpus, family, exporter).parameter_count == export.torch_parameters


def test_gpt2_parameters_by_hand(corpus):
    """GPT-2, vocabulary 96, hidden 32, MLP 80, 64 positions, 2 layers, lm_head tied to wte:
    wte 96*32 + wpe 64*32 = 5120; per layer ln_1, ln_2 4*32 = 128, c_attn 32*96 + 96 = 3168,
    attn c_proj 32*32 + 32 = 1056, c_fc 32*80 + 80 = 2640, mlp c_proj 80*32 + 32 = 2592 -> 9584;
    ln_f 64. Total 5120 + 2*9584 + 64 = 24352 (the tied lm_head adds nothing)."""
    assert corpus.get("gpt2", "torchscript").torch_parameters == 24352
    for exporter in EXPORTERS:
        assert _graph(corpus, "gpt2", exporter).parameter_count == 24352


NOT_LISTED_GELU = ("not in issue 10: the TorchScript export's GELU is Div, Erf, Add, Mul (4 FLOPs per element), "
                   "the dynamo export's one Gelu operator counts 1")
NOT_LISTED_CASTS = (
    "not in issue 10: Llama's TorchScript export has 31 explicit Cast operators the dynamo export does not, "
    "each priced by its memory traffic: on 512 A100 at batch 512 its data-parallel baseline is 35.2 us against "
    "31.5 us (10.4%), and 3.6 us of the 3.7 us gap is those casts (the batch reaches every operator of both files)")
MIXTRAL_CASTS = (
    "Mixtral has Llama's attention and so its TorchScript Casts: since its gathered MoE layers are rewritten "
    "into the stacked form (planner/onnx/moe_rewrite.py) its data-parallel baseline on 512 A100 at batch 512 "
    "halved (85.7 and 81.9 us before, 41.5 and 37.7 us after; the MoE region is priced the same in both files, "
    "8.8 us), so the same 3.7 us of Casts is now 9% of it")
AGREE_XFAIL = {("vit", "flops"): NOT_LISTED_GELU, ("llama", "data_parallel"): NOT_LISTED_CASTS,
               ("mixtral", "data_parallel"): MIXTRAL_CASTS}


# The TorchScript exporter bakes the example sequence length (8) into nn.MultiheadAttention's key
# reshape although the sequence axis is declared dynamic: that file computes garbage (onnx's
# reference evaluator refuses it) at any other length. So the exporters are compared there.
AGREE_SEQ = {family: EXAMPLE_SEQ for family in TORCH_FAMILIES}


def _agree_cases(what):
    for family in TWO_EXPORTERS:
        reason = AGREE_XFAIL.get((family, what))
        yield pytest.param(family, marks=[_xfail(reason)] if reason else [], id=family)


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b))


@pytest.mark.parametrize("family", list(_agree_cases("parameters")))
def test_exporters_agree_on_parameters(corpus, family):
    a, b = (_graph(corpus, family, e, seq=AGREE_SEQ.get(family, SEQ)).parameter_count for e in EXPORTERS)
    assert _relative(a, b) <= 0.01


@pytest.mark.parametrize("family", list(_agree_cases("flops")))
def test_exporters_agree_on_flops(corpus, family):
    a, b = (_graph(corpus, family, e, seq=AGREE_SEQ.get(family, SEQ)).summary()["flops_forward"] for e in EXPORTERS)
    assert _relative(a, b) <= 0.01


@pytest.mark.parametrize("family", list(_agree_cases("data_parallel")))
def test_exporters_agree_on_data_parallel_baseline(corpus, family):
    a, b = (_plan(corpus, family, e, "dgx_a100_64nodes", 512, AGREE_SEQ.get(family, SEQ)).data_parallel_seconds
            for e in EXPORTERS)
    assert _relative(a, b) <= 0.05


# ---- quantised weights --------------------------------------------------------------------------

@pytest.mark.parametrize("family", ONNX_FAMILIES)
def test_quantised_weights_are_parameters(corpus, family):
    """As main counts them (issue 10 item 5): the quantised weight, its scales and zero points are
    frozen parameters, 64*48 + 48 + 48 = 3168; with the float bias, 3168 + 48 = 3216 parameters."""
    graph = _graph(corpus, family, "onnx")
    summary = graph.summary()
    assert summary["frozen_parameters"] == QUANT_K * QUANT_N + 2 * QUANT_N == 3168
    assert graph.parameter_count == 3168 + QUANT_N == 3216


def test_corpus_exports_are_stripped_and_symbolic(corpus):
    """Every weight is a reference to an absent file, and the file keeps its symbolic dimensions."""
    for family in ("gpt2", "vit"):
        for exporter in EXPORTERS:
            export = corpus.get(family, exporter)
            model = onnx.load(str(export.path), load_external_data=False)
            weights = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) == 2]
            assert weights and all(i.data_location == onnx.TensorProto.EXTERNAL and not i.raw_data for i in weights)
            graph = import_model(export.path)
            assert set(graph.unbound_dims) == set(export.symbols)
            assert any(t.role is TensorRole.PARAMETER for t in graph.tensors.values())
