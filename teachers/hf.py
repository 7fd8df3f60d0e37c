"""Hugging Face transformers depth models as teachers.

Weights come through the Hugging Face cache (HF_HOME / HF_HUB_CACHE): fetched on
first use where the Hub is reachable, read from the cache otherwise. Each image goes
through the model's own image processor (its input size, multiple of the patch
size, normalisation, aspect ratio); images the processor brings to the same tensor
shape are batched; the output is resized back to the image's size.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .base import DepthKind, DepthPrediction, TeacherError, TeacherInput, TeacherUnavailable

CONFIG_FILES = ["*.json"]
# transformers' image processors for these need torchvision (no PIL fallback works).
NEEDS_TORCHVISION = ("depth_pro", "zoedepth")
WEIGHT_FORMATS = (["*.safetensors"], ["*.bin"])
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def select_device(device: str) -> torch.device:
    """'auto' -> CUDA, then Apple MPS, then CPU; anything else is checked to exist."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError):
        raise TeacherUnavailable(f"`device` {device!r}: give auto, cpu, cuda, cuda:N or mps") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise TeacherUnavailable(f"`device` {device}: this torch sees no CUDA GPU; use `device` auto or cpu")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise TeacherUnavailable(f"`device` {device}: only {torch.cuda.device_count()} CUDA GPU(s) here")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise TeacherUnavailable(f"`device` {device}: MPS is not available here; use `device` auto or cpu")
    return chosen


def select_amp_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None to run in float32. 'auto': fp16 on CUDA (its 11-bit
    mantissa keeps depth steps near 0.05%; bf16 would give 0.4%), float32 elsewhere."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else None
    if dtype not in DTYPES:
        raise TeacherUnavailable(f"`dtype` {dtype!r}: give auto, {', '.join(DTYPES)}")
    if DTYPES[dtype] is not torch.float32 and device.type == "cpu":
        raise TeacherUnavailable(f"`dtype` {dtype} is for GPUs; on the CPU the teacher runs in fp32 (`dtype` auto)")
    return None if dtype == "fp32" else DTYPES[dtype]


def offline_message(name: str, model_id: str) -> str:
    from huggingface_hub import constants

    return (
        f"teacher {name} ({model_id}) is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and the Hub "
        f"cannot be reached: run `simlidar teachers pull {name}` where the network is, or set HF_HOME to a "
        "folder that holds it"
    )


def fetch_weights(name: str, model_id: str, revision: str, download: bool = True) -> tuple[Path, str]:
    """The local folder with `model_id`'s config and weights, and the revision it holds
    (the commit hash; for a local folder, a fingerprint of its files). With
    download=False only the cache is looked at. Raises TeacherUnavailable."""
    local = Path(model_id).expanduser()
    if local.is_dir():
        return local.resolve(), folder_fingerprint(local)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    def fetch(patterns: list[str]) -> Path:
        return Path(
            snapshot_download(model_id, revision=revision, allow_patterns=patterns, local_files_only=not download)
        )

    try:
        folder = fetch(CONFIG_FILES)
        check_depth_model(folder, model_id)
        for patterns in WEIGHT_FORMATS:
            folder = fetch(CONFIG_FILES + patterns)
            if any(folder.glob(patterns[0])):
                break
        else:
            raise TeacherUnavailable(f"{model_id} has no .safetensors or .bin weights at revision {revision}")
    except LocalEntryNotFoundError:
        raise TeacherUnavailable(offline_message(name, model_id)) from None
    except GatedRepoError:
        raise TeacherUnavailable(
            f"{model_id} is gated: accept its terms on huggingface.co and log in with `hf auth login`"
        ) from None
    except RepositoryNotFoundError:
        raise TeacherUnavailable(
            f"no model {model_id} on the Hugging Face Hub (private ones need `hf auth login`)"
        ) from None
    except RevisionNotFoundError:
        raise TeacherUnavailable(f"{model_id} has no revision {revision!r}") from None
    except (HfHubHTTPError, OSError) as error:
        raise TeacherUnavailable(f"cannot fetch {model_id}: {str(error).splitlines()[0]}") from None
    return folder, folder.name


def folder_fingerprint(folder: Path) -> str:
    """A revision for a model folder outside the Hub cache: a hash of its config files'
    bytes and its weight files' names, sizes and modification times."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.suffix == ".json":
            digest.update(path.name.encode() + path.read_bytes())
        elif path.suffix in (".safetensors", ".bin"):
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return "local-" + digest.hexdigest()[:16]


def check_depth_model(folder: Path, model_id: str) -> str:
    """The model_type of the config in `folder`; TeacherUnavailable unless transformers
    has a depth-estimation class for it."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES

    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        raise TeacherUnavailable(f"{model_id} has no readable config.json; is it a transformers model?") from None
    if model_type not in MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES:
        raise TeacherUnavailable(
            f"{model_id} is a {model_type!r} model, not a depth-estimation model; transformers has depth models "
            f"of types {', '.join(MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES)}"
        )
    return model_type


def downscale(rgb: np.ndarray, max_size: int) -> np.ndarray:
    """rgb (H, W, 3) uint8, shrunk (area-averaged, aspect kept) so its long side is at
    most max_size pixels; unchanged when already small enough or max_size is 0."""
    height, width = rgb.shape[:2]
    if max_size <= 0 or max(height, width) <= max_size:
        return rgb
    scale = max_size / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))


class HFTeacher:
    """A transformers depth-estimation model. Weights are located (and their revision
    read) at construction; the model is loaded on the first prediction, so a run whose
    every image is cached never loads it."""

    def __init__(
        self,
        name: str,
        model_id: str,
        output: DepthKind,
        revision: str = "main",
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 4,
        max_size: int = 1536,
    ):
        if batch_size < 1:
            raise TeacherUnavailable("`batch_size` must be at least 1")
        if max_size < 0:
            raise TeacherUnavailable("`max_size` must not be negative (0 = never shrink)")
        self.name, self.model_id, self.output = name, model_id, output
        self.device = select_device(device)
        self.amp_dtype = select_amp_dtype(dtype, self.device)
        self.batch_size, self.max_size = batch_size, max_size
        self.folder, self.revision = fetch_weights(name, model_id, revision)
        self.model_type = check_depth_model(self.folder, model_id)
        self._model = None
        self._processor = None

    def cache_id(self, item: TeacherInput) -> str:
        precision = str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype is not None else "float32"
        return f"{self.name}@{self.revision}:max{self.max_size}:{precision}"

    def load(self) -> None:
        """Load the image processor and the model onto the device (once)."""
        if self._model is not None:
            return
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation
        from transformers.utils import is_torchvision_available, logging

        logging.disable_progress_bar()
        if self.model_type in NEEDS_TORCHVISION and not is_torchvision_available():
            raise TeacherUnavailable(
                f"{self.name} is a {self.model_type} model, whose image processor needs torchvision: "
                "pip install torchvision (the build matching your torch)"
            )
        backend = None if is_torchvision_available() else "pil"
        try:
            self._processor = AutoImageProcessor.from_pretrained(self.folder, backend=backend)
            model = AutoModelForDepthEstimation.from_pretrained(self.folder)
        except ImportError as error:
            raise TeacherUnavailable(
                f"{self.name} needs a package that is missing: {str(error).splitlines()[0]}"
            ) from None
        except (OSError, ValueError) as error:
            raise TeacherUnavailable(
                f"cannot load {self.name} from {self.folder}: {str(error).splitlines()[0]}"
            ) from None
        self._model = model.eval().to(self.device)

    @property
    def model(self) -> torch.nn.Module:
        self.load()
        return self._model

    @property
    def processor(self):
        self.load()
        return self._processor

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """(1, 3, h, w) float pixel values of one (H, W, 3) uint8 image, as the model's
        processor makes them after shrinking to `max_size`."""
        kwargs = {"device": self.device} if _is_torch_backend(self.processor) else {}
        return self.processor(images=downscale(rgb, self.max_size), return_tensors="pt", **kwargs)["pixel_values"]

    def forward(self, pixel_values: torch.Tensor):
        """The bare model on a (B, 3, h, w) batch already on the device."""
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()
        )
        with torch.inference_mode(), autocast:
            return self.model(pixel_values=pixel_values)

    def predict(self, batch: Sequence[TeacherInput]) -> list[DepthPrediction | TeacherError]:
        results: list[DepthPrediction | TeacherError | None] = [None] * len(batch)
        pixel_values = [self.preprocess(item.rgb) for item in batch]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, values in enumerate(pixel_values):
            groups[tuple(values.shape[-2:])].append(index)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                stacked = torch.cat([pixel_values[index] for index in chunk]).to(self.device)
                outputs = self.forward(stacked)
                for index, prediction in zip(chunk, self._postprocess(outputs, [batch[i] for i in chunk]), strict=True):
                    results[index] = prediction
        return results

    def _postprocess(self, outputs, items: Sequence[TeacherInput]) -> list[DepthPrediction]:
        """Model outputs for `items` -> depth at each image's size (float32 on the CPU)."""
        for key in ("predicted_depth", "field_of_view"):
            if getattr(outputs, key, None) is not None:
                outputs[key] = outputs[key].float()
        sizes = [tuple(item.rgb.shape[:2]) for item in items]
        kwargs = {}
        if "source_sizes" in _parameters(self.processor.post_process_depth_estimation):
            # ZoeDepth pads its input and removes the padding in the size it was given.
            kwargs["source_sizes"] = [downscale(item.rgb, self.max_size).shape[:2] for item in items]
        processed = self.processor.post_process_depth_estimation(outputs, target_sizes=sizes, **kwargs)
        predictions = []
        for result, size in zip(processed, sizes, strict=True):
            depth = result["predicted_depth"].float().reshape(size).cpu().numpy()
            focal = result.get("focal_length")
            predictions.append(
                DepthPrediction(
                    depth=depth,
                    kind=self.output,
                    focal_px=float(focal) if focal is not None else None,
                    conversion={"model": self.model_id},
                    teacher=self.name,
                    revision=self.revision,
                )
            )
        return predictions


def _is_torch_backend(processor) -> bool:
    from transformers.image_processing_backends import TorchvisionBackend

    return isinstance(processor, TorchvisionBackend)


def _parameters(function) -> set[str]:
    import inspect

    return set(inspect.signature(function).parameters)
