"""Hugging Face transformers depth models as teachers.

Weights come through the Hugging Face cache (HF_HOME / HF_HUB_CACHE): fetched on
first use where the Hub is reachable, read from the cache otherwise. Each image goes
through the model's own image processor (its input size, multiple of the patch
size, normalisation, aspect ratio); images the processor brings to the same tensor
shape are batched; the output is resized back to the image's size. The CPU steps
(HFTeacher) and the forward (HFModel) can run in different processes (model_io.py).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from .base import DepthKind, DepthPrediction, TeacherError, TeacherInput, TeacherUnavailable
from .model_io import OUTPUT_KEYS, ModelBatch, ModelRunner, level_table, model_input, outputs_to_host

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


def fetch_weights(
    name: str, model_id: str, revision: str, download: bool = True, weights: bool = True
) -> tuple[Path, str]:
    """The local folder with `model_id`'s config and weights, and the revision it holds
    (the commit hash; for a local folder, a fingerprint of its files). With
    download=False only the cache is looked at; with weights=False only the configs are
    fetched (the processor's side of a model that runs elsewhere). Raises TeacherUnavailable."""
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
        if weights:
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


def downscaled_size(height: int, width: int, max_size: int) -> tuple[int, int]:
    """(height, width) of a photo shrunk (aspect kept) so its long side is at most max_size
    pixels; unchanged when already small enough or max_size is 0."""
    if max_size <= 0 or max(height, width) <= max_size:
        return height, width
    scale = max_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def downscale(rgb: np.ndarray, max_size: int) -> np.ndarray:
    """rgb (H, W, 3) uint8 shrunk (area-averaged) to downscaled_size."""
    height, width = downscaled_size(*rgb.shape[:2], max_size)
    if (height, width) == rgb.shape[:2]:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BOX))


T = TypeVar("T")


def loaded(load: Callable[[], T], name: str, what: str) -> T:
    """load()'s result; its failures as one TeacherUnavailable line: a package teacher `name`
    needs is missing, or `what` cannot be loaded (a damaged file: safetensors' own error)."""
    from safetensors import SafetensorError

    try:
        return load()
    except ImportError as error:
        raise TeacherUnavailable(f"{name} needs a package that is missing: {str(error).splitlines()[0]}") from None
    except (OSError, ValueError, SafetensorError) as error:
        raise TeacherUnavailable(
            f"cannot load {what}: {str(error).splitlines()[0]} (fetch its files again if they are damaged)"
        ) from None


class HFModel:
    """A transformers depth model on its device: the forward step of an HFTeacher (its
    ModelRunner when the model runs in this process; a GPU actor holds one). The weights
    load on the first forward."""

    def __init__(self, folder: Path, name: str, device: str = "auto", dtype: str = "auto"):
        self.folder, self.name = folder, name
        self.device = select_device(device)
        self.amp_dtype = select_amp_dtype(dtype, self.device)
        self._model = None

    @property
    def precision(self) -> str:
        return str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype is not None else "float32"

    @property
    def model(self) -> torch.nn.Module:
        """The model on the device, loaded once."""
        if self._model is None:
            from transformers import AutoModelForDepthEstimation
            from transformers.utils import logging

            logging.disable_progress_bar()
            model = loaded(
                lambda: AutoModelForDepthEstimation.from_pretrained(self.folder),
                self.name,
                f"{self.name} from {self.folder}",
            )
            self._model = model.eval().to(self.device)
        return self._model

    def forward(self, pixel_values: torch.Tensor):
        """The bare model on a (B, 3, h, w) batch already on the device."""
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()
        )
        with torch.inference_mode(), autocast:
            return self.model(pixel_values=pixel_values)

    def run(self, batch: ModelBatch) -> dict[str, np.ndarray]:
        """One batch's raw outputs on the CPU, at the model's resolution."""
        return outputs_to_host(self.forward(model_input(batch, self.device)))

    def run_batches(self, batches: list[ModelBatch]) -> list[dict[str, np.ndarray]]:
        return [self.run(batch) for batch in batches]


class HFTeacher:
    """A transformers depth-estimation model as a teacher, in three steps: prepare (shrink to
    max_size, the model's processor's resize: CPU work where the photo is), the forward on
    `runner` (this process's HFModel, or a GPU actor), finish (the processor's resize back
    to each photo's size). Weights are located (and their revision read) at construction;
    processor and model load on first use, so a run whose every image is cached loads neither."""

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
        runner: ModelRunner | None = None,
    ):
        """runner: where the forward runs (None: an HFModel here on `device` in `dtype`; with
        one, only the configs are fetched here and device and dtype are the runner's)."""
        if batch_size < 1:
            raise TeacherUnavailable("`batch_size` must be at least 1")
        if max_size < 0:
            raise TeacherUnavailable("`max_size` must not be negative (0 = never shrink)")
        self.name, self.model_id, self.output = name, model_id, output
        self.batch_size, self.max_size = batch_size, max_size
        self.folder, self.revision = fetch_weights(name, model_id, revision, weights=runner is None)
        self.model_type = check_depth_model(self.folder, model_id)
        self.runner = runner or HFModel(self.folder, name, device, dtype)
        self._processor = None
        self._levels: np.ndarray | None = None

    def cache_id(self, item: TeacherInput) -> str:
        return f"{self.name}@{self.revision}:max{self.max_size}:{self.runner.precision}"

    @property
    def processor(self):
        """The model's image processor, loaded once (with torchvision where it is installed)."""
        if self._processor is None:
            from transformers import AutoImageProcessor
            from transformers.utils import is_torchvision_available

            if self.model_type in NEEDS_TORCHVISION and not is_torchvision_available():
                raise TeacherUnavailable(
                    f"{self.name} is a {self.model_type} model, whose image processor needs torchvision: "
                    "pip install torchvision (the build matching your torch)"
                )
            backend = None if is_torchvision_available() else "pil"
            self._processor = loaded(
                lambda: AutoImageProcessor.from_pretrained(self.folder, backend=backend),
                self.name,
                f"{self.name}'s processor from {self.folder}",
            )
            self._levels = level_table(self._processor)
        return self._processor

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """(3, h, w) model input of one (H, W, 3) uint8 photo, as far as the CPU makes it: shrunk
        to max_size, resized by the processor; uint8 levels where the processor has a level
        table (normalised where the model runs), else its float32 pixel values."""
        image = downscale(rgb, self.max_size)
        processor = self.processor
        if self._levels is not None:
            levels = processor(images=image, do_rescale=False, do_normalize=False, return_tensors="pt")
            if levels["pixel_values"].dtype == torch.uint8:
                return levels["pixel_values"][0].numpy()
        return processor(images=image, return_tensors="pt")["pixel_values"][0].numpy()

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """(1, 3, h, w) float32 pixel values of one photo on this process's model's device:
        the processor's numbers (for timing the bare forward)."""
        return model_input(self._batch([self.prepare(rgb)]), self.runner.device)

    def _batch(self, prepared: list[np.ndarray]) -> ModelBatch:
        pixels = np.stack(prepared)
        return ModelBatch(pixels, self._levels if pixels.dtype == np.uint8 else None)

    def predict(self, batch: Sequence[TeacherInput]) -> list[DepthPrediction | TeacherError]:
        """Photos whose model inputs have one size go through the model together, batch_size at
        a time; the runner gets every batch at once."""
        prepared = [self.prepare(item.rgb) for item in batch]
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, pixels in enumerate(prepared):
            groups[(pixels.dtype.str, pixels.shape)].append(index)
        chunks = [
            indices[start : start + self.batch_size]
            for indices in groups.values()
            for start in range(0, len(indices), self.batch_size)
        ]
        outputs = self.runner.run_batches([self._batch([prepared[index] for index in chunk]) for chunk in chunks])
        results: list[DepthPrediction | TeacherError | None] = [None] * len(batch)
        for chunk, output in zip(chunks, outputs, strict=True):
            for index, prediction in zip(chunk, self.finish(output, [batch[i] for i in chunk]), strict=True):
                results[index] = prediction
        return results

    def finish(self, outputs: dict[str, np.ndarray], items: Sequence[TeacherInput]) -> list[DepthPrediction]:
        """One batch's raw outputs (see ModelBatch) -> depth at each photo's size (float32)."""
        model_outputs = SimpleNamespace(
            **{key: torch.tensor(outputs[key]).float() if key in outputs else None for key in OUTPUT_KEYS}
        )
        sizes = [tuple(item.rgb.shape[:2]) for item in items]
        kwargs = {}
        if "source_sizes" in _parameters(self.processor.post_process_depth_estimation):
            # ZoeDepth pads its input and removes the padding in the size it was given.
            kwargs["source_sizes"] = [downscaled_size(*size, self.max_size) for size in sizes]
        processed = self.processor.post_process_depth_estimation(model_outputs, target_sizes=sizes, **kwargs)
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


def _parameters(function) -> set[str]:
    import inspect

    return set(inspect.signature(function).parameters)
