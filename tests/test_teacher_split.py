"""A model teacher split into its CPU steps (prepare, finish: where the photos are) and its
forward (where the model is: a GPU actor on Ray): the prepared inputs are the processor's
numbers bit for bit, what travels is uint8 at the model's input size, and every path gives
the bytes the plain transformers pipeline gives."""

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from PIL import Image
from simlidar.pipeline.bench.teacher import DA_V2_INPUT_PX, DA_V2_PROCESSOR
from simlidar.pipeline.config import GenerateConfig
from simlidar.pipeline.runner import generate
from simlidar.pipeline.stages.teacher import TeacherCache
from simlidar.teachers import DepthPrediction, TeacherInput, TeacherUnavailable, load_teacher
from simlidar.teachers.hf import HFModel
from simlidar.teachers.model_io import ModelBatch, level_table, look_up, model_input
from transformers import DPTImageProcessorPil

from .helpers import REPO, tar_members
from .tiny_models import tiny_depth_anything, tiny_dpt

KITTI_PHOTO = REPO / "examples" / "scenes" / "street_kitti.jpg"


def kitti_rgb() -> np.ndarray:
    with Image.open(KITTI_PHOTO) as image:
        return np.asarray(image.convert("RGB"))


def save_model(folder: Path, model, processor) -> Path:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture
def published_processor_teacher(tmp_path):
    """The tiny Depth Anything behind Depth Anything V2's published processor (short side to
    518, a multiple of 14, bicubic): a KITTI photo's model input is the real one, 518 x 1722."""
    model, _ = tiny_depth_anything()
    size = {"height": DA_V2_INPUT_PX, "width": DA_V2_INPUT_PX}
    folder = save_model(tmp_path / "da", model, DPTImageProcessorPil(size=size, **DA_V2_PROCESSOR))
    return load_teacher(f"hf:{folder}", output="disparity", device="cpu", batch_size=2)


class RecordingRunner:
    """A stand-in for the GPU actor: records what reaches it, runs a real HFModel."""

    def __init__(self, model: HFModel, precision: str = "float32"):
        self.model, self.precision = model, precision
        self.received: list[tuple] = []

    def run_batches(self, batches: list[ModelBatch]) -> list[dict]:
        self.received += [(batch.pixels.shape, batch.pixels.dtype, batch.levels is not None) for batch in batches]
        return self.model.run_batches(batches)


def plain_transformers(folder: Path, photos: list[np.ndarray]) -> list[np.ndarray]:
    """The depth of same-size photos forwarded together as transformers alone makes it (what
    the teacher did before it was split): processor, model, post-processing."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
    model = AutoModelForDepthEstimation.from_pretrained(folder).eval()
    with torch.inference_mode():
        outputs = model(pixel_values=processor(images=photos, return_tensors="pt")["pixel_values"])
    results = processor.post_process_depth_estimation(outputs, target_sizes=[rgb.shape[:2] for rgb in photos])
    return [result["predicted_depth"].float().numpy() for result in results]


def test_a_kitti_photos_prepared_input_is_uint8_at_the_model_size_and_normalises_to_the_processors_numbers(
    published_processor_teacher,
):
    teacher, rgb = published_processor_teacher, kitti_rgb()
    prepared = teacher.prepare(rgb)
    assert rgb.shape == (375, 1242, 3) and prepared.shape == (3, 518, 1722) and prepared.dtype == np.uint8
    expected = teacher.processor(images=rgb, return_tensors="pt")["pixel_values"]
    batch = ModelBatch(prepared[None], level_table(teacher.processor))
    on_cpu = model_input(batch, torch.device("cpu"))
    # The GPU's path (torch's gather), run here on the CPU.
    gathered = look_up(torch.from_numpy(batch.pixels), torch.from_numpy(batch.levels))
    # Max abs difference to the processor's pixel values: 0 (bit for bit), both ways.
    assert torch.equal(on_cpu, expected) and torch.equal(gathered, expected)
    assert torch.equal(teacher.preprocess(rgb), expected)
    # A quarter of the bytes of the float32 pixel values travels.
    assert prepared.nbytes * 4 == expected.numpy().nbytes


def test_a_squashing_processor_has_a_level_table_and_padding_or_cropping_ones_send_float32():
    rgb = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    _, squash = tiny_dpt()
    table = level_table(squash)
    # Level 0 and 255 of channel 0: (0 / 255 - 0.5) / 0.5 and (1 - 0.5) / 0.5 (DPT's mean and std).
    assert table.shape == (3, 256) and table[0, 0] == -1.0 and table[0, 255] == 1.0
    resized = squash(images=rgb, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"]
    normalised = model_input(ModelBatch(resized, table), torch.device("cpu"))
    assert torch.equal(normalised, squash(images=rgb, return_tensors="pt")["pixel_values"])
    padding = DPTImageProcessorPil(size={"height": 56, "width": 56}, keep_aspect_ratio=True, do_pad=True)
    cropping = DPTImageProcessorPil(size={"height": 56, "width": 56}, do_center_crop=True, crop_size=32)
    assert level_table(padding) is None and level_table(cropping) is None


def test_the_split_teacher_gives_the_bytes_of_plain_transformers_and_the_runner_gets_model_size_uint8(tmp_path):
    folder = save_model(tmp_path / "da", *tiny_depth_anything())
    photos = [kitti_rgb(), kitti_rgb()[:, :600], kitti_rgb()[::-1].copy()]
    batch = [TeacherInput(Path(f"p{index}.jpg"), rgb) for index, rgb in enumerate(photos)]
    runner = RecordingRunner(HFModel(folder, "tiny", device="cpu"))
    teacher = load_teacher(f"hf:{folder}", output="disparity", batch_size=2, runner=runner)
    predictions = teacher.predict(batch)
    # The two KITTI-size photos are forwarded together (a CPU forward's last bits depend on its batch).
    expected = plain_transformers(folder, [photos[0], photos[2]]) + plain_transformers(folder, [photos[1]])
    for prediction, depth in zip([predictions[i] for i in (0, 2, 1)], expected, strict=True):
        assert prediction.depth.shape == depth.shape and np.array_equal(prediction.depth, depth)
    # Same-size inputs go together, batch_size at a time: the model's 56 px short side, not the photos.
    assert runner.received == [((2, 3, 56, 182), np.uint8, True), ((1, 3, 56, 84), np.uint8, True)]
    in_process = load_teacher(f"hf:{folder}", output="disparity", device="cpu", batch_size=2).predict(batch)
    assert all(np.array_equal(a.depth, b.depth) for a, b in zip(predictions, in_process, strict=True))


def test_a_processor_without_a_level_table_sends_float32_and_gives_the_same_depth(tmp_path):
    model, processor = tiny_depth_anything()
    folder = save_model(tmp_path / "levels", model, processor)
    padded = DPTImageProcessorPil(**{**processor.to_dict(), "do_pad": True, "size_divisor": 14})
    padded_folder = save_model(tmp_path / "float", model, padded)
    runner = RecordingRunner(HFModel(padded_folder, "tiny", device="cpu"))
    batch = [TeacherInput(Path("p.jpg"), kitti_rgb())]
    sent_float = load_teacher(f"hf:{padded_folder}", output="disparity", runner=runner).predict(batch)[0]
    assert runner.received == [((1, 3, 56, 182), np.float32, False)]
    # 56 x 182 is already a multiple of 14: padding adds nothing, so the depth must not change.
    sent_levels = load_teacher(f"hf:{folder}", output="disparity", device="cpu").predict(batch)[0]
    assert np.array_equal(sent_float.depth, sent_levels.depth)


def test_where_the_model_runs_elsewhere_the_task_needs_no_gpu_nor_weights_and_keys_by_its_precision(tmp_path):
    folder = save_model(tmp_path / "da", *tiny_depth_anything())
    configs_only = tmp_path / "configs"
    configs_only.mkdir()
    for path in folder.glob("*.json"):
        (configs_only / path.name).write_bytes(path.read_bytes())
    runner = RecordingRunner(HFModel(folder, "tiny", device="cpu"), precision="float16")
    # cuda here, where torch sees no GPU: the device is the runner's (a GPU actor's) business.
    teacher = load_teacher(f"hf:{configs_only}", output="disparity", device="cuda", runner=runner)
    assert teacher.cache_id(None).endswith(":max1536:float16")
    assert teacher.predict([TeacherInput(Path("p.jpg"), kitti_rgb())])[0].depth.shape == (375, 1242)
    with pytest.raises(TeacherUnavailable, match="this torch sees no CUDA GPU"):
        load_teacher(f"hf:{configs_only}", output="disparity", device="cuda")


def _write_entry(root: str, index: int, barrier) -> None:
    cache = TeacherCache(root)
    barrier.wait()  # every writer finds no cache, then all create it at once
    path = cache.entry_path(f"ab{index:02d}" + "0" * 60, "teacher-x")
    cache.put(path, DepthPrediction(np.full((4, 5), index, np.float32), "disparity"))


def test_shard_tasks_creating_the_teacher_cache_at_once_all_write_their_entries(tmp_path):
    writers = 6
    context = multiprocessing.get_context("fork")
    for trial in range(3):
        root = str(tmp_path / f"cache{trial}")
        barrier = context.Barrier(writers)
        processes = [context.Process(target=_write_entry, args=(root, i, barrier)) for i in range(writers)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        assert [process.exitcode for process in processes] == [0] * writers
        cache = TeacherCache(root)
        for index in range(writers):
            entry = cache.get(cache.entry_path(f"ab{index:02d}" + "0" * 60, "teacher-x"), (4, 5))
            assert entry is not None and np.all(entry.depth == index)


@pytest.mark.slow
def test_ray_with_a_teacher_actor_writes_the_bytes_of_an_in_process_run(cli, tmp_path):
    """A CPU forward's last bits depend on its thread count, and the actor's runs on one
    thread (Ray's OMP_NUM_THREADS=1 for a 1-CPU actor): the in-process run gets one thread
    too, in a process of its own (numba's OpenMP layer sets the count for torch as well).
    On a GPU the thread count plays no part."""
    folder = save_model(tmp_path / "da", *tiny_depth_anything())
    photos = tmp_path / "photos"
    photos.mkdir()
    for scene in ("street_kitti", "corridor", "yard"):
        (photos / f"{scene}.jpg").write_bytes((REPO / "examples" / "scenes" / f"{scene}.jpg").read_bytes())
    options = ["--teacher", f"hf:{folder}", "--teacher-output", "disparity", "--fov", "80", "--shard-size", "2"]
    options += ["--quiet", "--batch-size", "2", "--images", str(photos)]
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    here = [sys.executable, "-c", "from simlidar.pipeline.cli import main; main()", "generate", *options]
    subprocess.run([*here, "--out", str(tmp_path / "here"), "--workers", "1"], env=one_thread, check=True)
    code, _, err = cli("generate", *options, "--out", tmp_path / "ray", "--workers", "2", "--teacher-actors", "1")
    assert code == 0, err
    for shard in ("shard-000000.tar", "shard-000001.tar"):
        assert (tmp_path / "here" / shard).read_bytes() == (tmp_path / "ray" / shard).read_bytes()
    assert len(tar_members(tmp_path / "ray" / "shard-000000.tar")) > 0
    cache = tmp_path / "ray" / "teacher-cache"
    entries = sorted(path.relative_to(tmp_path / "ray") for path in cache.rglob("c/0/0") if path.is_file())
    assert len(entries) == 3
    for entry in entries:
        assert (tmp_path / "here" / entry).read_bytes() == (tmp_path / "ray" / entry).read_bytes()
    # Three photos of three sizes: a call each.
    assert "teacher actor 0: 3 photos in 3 calls" in (tmp_path / "ray" / "generate.log").read_text()


def test_damaged_weights_or_processor_config_are_one_line_naming_the_file_they_stop(tmp_path):
    folder = save_model(tmp_path / "da", *tiny_depth_anything())
    batch = [TeacherInput(Path("p.jpg"), kitti_rgb())]
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(TeacherUnavailable) as damaged_weights:
        load_teacher(f"hf:{folder}", output="disparity", device="cpu").predict(batch)
    assert str(damaged_weights.value).startswith(f"cannot load hf:{folder} from {folder}: ")
    (folder / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(TeacherUnavailable) as damaged_processor:
        load_teacher(f"hf:{folder}", output="disparity", device="cpu").predict(batch)
    assert str(damaged_processor.value).startswith(f"cannot load hf:{folder}'s processor from {folder}: ")
    for error in (damaged_weights.value, damaged_processor.value):
        assert "\n" not in str(error) and str(error).endswith("(fetch its files again if they are damaged)")


@pytest.mark.slow
def test_a_run_on_a_ray_already_running_hands_its_teacher_actors_core_back(tmp_path):
    """The shard tasks' worker processes outlive the run and keep their teacher, and so a
    handle to its actor: unless the run kills its actors, one keeps its core (on a GPU
    cluster: its GPU) and the next run on that Ray waits for it forever."""
    folder = save_model(tmp_path / "da", *tiny_depth_anything())
    photos = tmp_path / "photos"
    photos.mkdir()
    for scene in ("corridor", "yard"):
        (photos / f"{scene}.jpg").write_bytes((REPO / "examples" / "scenes" / f"{scene}.jpg").read_bytes())
    config = GenerateConfig(
        images=str(photos), teacher=f"hf:{folder}", teacher_output="disparity", fov_deg=80, shard_size=1
    )
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        address = ray.get_runtime_context().gcs_address
        summary = generate(config, tmp_path / "out", progress=False, address=address, teacher_actors=1)
        assert summary.shards_total == 2 and "teacher: 1 actors" in (tmp_path / "out" / "generate.log").read_text()
        deadline = time.monotonic() + 30
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("CPU", 0) == 2
    finally:
        ray.shutdown()
