"""The size of `simlidar bench gpu` for each --size: every count that sets how long it runs.

gpu  the full run. Estimated on one H100/H200-class GPU with 16 cores: the teacher's 12
     forwards about 1 minute (the models built and loaded included), generate about 1
     minute (two runs of 15 shard tasks: a warm-up of 1 wave, then 5 waves of 8 photos), training
     about 2 minutes (two runs of 300 steps with their loaders, 50 compute-only steps each,
     then torchrun): 4-5 minutes in all, under the 8 that leave room to rerun on a short loan.
cpu  the same parts where there is no GPU, scaled to a few minutes on 2 cores: fp32 and batch
     1 only, the model input of generate's teacher at 196 px, a few photos and steps.
tiny every part at its smallest, without generate's warm-up (the tests run it).
"""

from __future__ import annotations

from dataclasses import dataclass

# auto: gpu where torch sees a CUDA GPU, else cpu.
SIZE_CHOICES = ("auto", "gpu", "cpu", "tiny")


@dataclass(frozen=True)
class TeacherPlan:
    """Part 1, the teacher's bare forward: each model x precision x batch size on a square
    input of input_px (518: the models' default), the median of `repeats` after a warm-up."""

    models: tuple[str, ...]
    precisions: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    input_px: int
    repeats: int


@dataclass(frozen=True)
class GeneratePlan:
    """Part 2, generate with the teacher on actors: the bundled street photo (KITTI's
    1242 x 375) downsampled by photo_scale, depth-anything-v2-small with its input's short
    side at input_px; shard_size photos per shard; two runs of waves[i] x the task slots
    shards each: a warm-up (its worker processes start, import and compile; 0 waves: none)
    and the timed run, whose steady window (from its first shard's end to its last one's
    start) gives the rate: at least 3 waves, so that it lasts a wave or more. Then a teacher
    actor alone, sent actor_calls ready batches at once.
    cpus: Ray's cores (None: every one); a task slot is a core no teacher actor holds."""

    photo_scale: int
    input_px: int
    shard_size: int
    waves: tuple[int, int]
    actor_calls: int
    cpus: int | None = None


@dataclass(frozen=True)
class TrainPlan:
    """Part 3, training on part 2's shards: `steps` of the training loop per objective with
    `workers` loader processes (None: one per core), `timed_steps` compute-only steps (one
    batch kept on the device) alone and under torchrun, `loader_samples` read by one loader.
    Its fields are the keyword arguments of simlidar.train.gpu_bench.single_device."""

    steps: int
    batch_size: int
    crop: tuple[int, int]
    workers: int | None
    timed_steps: int
    loader_samples: int


@dataclass(frozen=True)
class BenchPlan:
    name: str
    teacher: TeacherPlan
    generate: GeneratePlan
    train: TrainPlan


DA_V2 = ("depth-anything-v2-small", "depth-anything-v2-base")

PLANS = {
    "gpu": BenchPlan(
        "gpu",
        TeacherPlan(DA_V2, ("fp32", "fp16"), (1, 8, 32), input_px=518, repeats=10),
        GeneratePlan(photo_scale=1, input_px=518, shard_size=8, waves=(1, 5), actor_calls=50),
        TrainPlan(steps=300, batch_size=8, crop=(256, 512), workers=None, timed_steps=50, loader_samples=64),
    ),
    "cpu": BenchPlan(
        "cpu",
        TeacherPlan(DA_V2, ("fp32",), (1,), input_px=518, repeats=2),
        GeneratePlan(photo_scale=2, input_px=196, shard_size=2, waves=(1, 4), actor_calls=2),
        TrainPlan(steps=6, batch_size=2, crop=(128, 256), workers=1, timed_steps=2, loader_samples=8),
    ),
    "tiny": BenchPlan(
        "tiny",
        TeacherPlan(DA_V2, ("fp32",), (1,), input_px=56, repeats=1),
        GeneratePlan(photo_scale=4, input_px=56, shard_size=1, waves=(0, 3), actor_calls=1, cpus=2),
        TrainPlan(steps=2, batch_size=1, crop=(32, 64), workers=0, timed_steps=1, loader_samples=2),
    ),
}
