"""Where the explorer's model comes from: the samples in ``sample_models/``, the machine presets,
uploads' identities (:class:`ModelSource`), and starting values for a model's symbolic
dimensions. Uploaded bytes are kept by the session (:mod:`explorer.state`), not here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from planner.machine.tree import preset_paths
from planner.onnx.importer import ModelImportError, model_sha256


ROOT = Path(__file__).resolve().parent.parent


SAMPLES_DIR = ROOT / "sample_models"


#: The view the app opens on: Llama-3-8B at a batch of 1,024 sequences of 1,024 tokens (a million
#: tokens) on 64 nodes x 8 A100-80GB, chosen by measurement among recognised models, batches and
#: clusters (``bench/default_candidates.py``; README, "The explorer"): pure data parallelism does
#: not fit (every GPU would hold the 8B weights, their gradients and Adam's state: 147 GiB), the
#: plan fits (ZeRO-1, the hidden size split over GPU pairs) and is faster than data parallelism
#: would be. Its plan ships with the sample (:mod:`explorer.default_plan`): a fresh server draws
#: it at once. A batch smaller than the devices would teach a wrong lesson (stages with one
#: micro-batch and a half-empty pipeline).
DEFAULT_SAMPLE = "llama3_8b"


DEFAULT_BINDINGS = {"batch": 1024, "seq": 1024}


DEFAULT_MACHINE = "dgx_a100_64nodes"


def sample_paths() -> dict[str, Path]:
    """Sample name (file stem) -> path of every ``sample_models/*.onnx``."""
    return {p.stem: p for p in sorted(SAMPLES_DIR.glob("*.onnx"))}


def preset_names() -> list[str]:
    return list(preset_paths())


@dataclass(frozen=True)
class ModelSource:
    """Where the model in use comes from. Uploaded bytes are kept by the session, not here."""

    kind: str  # "sample" or "upload"
    label: str  # sample name or uploaded file name
    sha256: str
    path: str | None = None  # samples only

    @property
    def short_sha(self) -> str:
        return self.sha256[:12]


def sample_source(name: str) -> ModelSource:
    paths = sample_paths()
    if name not in paths:
        raise ModelImportError(f"unknown sample model {name!r}; samples are {', '.join(paths)}")
    path = paths[name]
    return ModelSource("sample", name, _file_sha256(path), str(path))


_SHA_CACHE: dict[tuple[str, float, int], str] = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_mtime, st.st_size)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = model_sha256(path)
    return _SHA_CACHE[key]


def upload_source(filename: str, data: bytes) -> ModelSource:
    return ModelSource("upload", filename, model_sha256(data))


def guess_binding(dim: str) -> int:
    """A starting value for a symbolic dimension: its default when known by name, else 1."""
    low = dim.lower()
    if low in DEFAULT_BINDINGS:
        return DEFAULT_BINDINGS[low]
    if "batch" in low:
        return DEFAULT_BINDINGS["batch"]
    if "seq" in low or "len" in low or "token" in low:
        return DEFAULT_BINDINGS["seq"]
    return 1


def bindings_for(dims: Iterable[str], previous: dict[str, int] | None = None) -> dict[str, int]:
    """Values for a model's symbolic dims: the previous value of a dim of the same name, else a guess."""
    previous = previous or {}
    return {d: int(previous.get(d, guess_binding(d))) for d in dims}
