"""`simlidar train`, `simlidar eval`, and the training benches `simlidar bench train|ssi|student|kd-target`.

torch and the training code are imported inside the commands, so `simlidar --help`
stays fast; only the torch-free run options (`simlidar.train.config`) load up front."""

from __future__ import annotations

import signal
import sys
from dataclasses import fields
from pathlib import Path

import click

from .config import DECAYS, LOSS_NAMES, OBJECTIVES, STAGES, STUDENTS, TrainConfig
from .errors import RankStopped, StoppedAtOnce, TrainingInterrupted

DEFAULTS = {field.name: field.default for field in fields(TrainConfig) if field.name != "shards"}


@click.command()
@click.option("--shards", required=True, help="Shard folder (its *.tar), one .tar, or a brace pattern of shards.")
@click.option(
    "--stage",
    default=DEFAULTS["stage"],
    type=click.Choice(STAGES),
    help="pretrain: L1/L2 on the dense target; finetune: supervised on real GT + SSI to the teacher.",
)
@click.option(
    "--out",
    default=None,
    help="Run folder (config.json, log.csv, val.csv, tensorboard/, last.pt, best.pt) [default: runs/STAGE].",
)
@click.option("--init", default=None, help="Checkpoint to start from (needed by --stage finetune).")
@click.option(
    "--steps",
    default=DEFAULTS["steps"],
    type=int,
    help="Optimizer steps in the whole schedule; may be raised when resuming (the schedule is recomputed).",
)
@click.option("--stop-at", default=None, type=int, help="Checkpoint and stop at this step; re-run to continue.")
@click.option(
    "--batch-size", default=DEFAULTS["batch_size"], type=int, help="Samples per step (per rank under torchrun)."
)
@click.option("--crop", default=DEFAULTS["crop"], type=(int, int), help="Random crop H W (smaller images are padded).")
@click.option(
    "--width",
    default=None,
    type=int,
    help="Model width (channels of the first stage) [default: 32, 16 for bins-kd students, or --init's].",
)
@click.option("--lr", default=DEFAULTS["lr"], type=float, help="Peak learning rate (AdamW), reached after the warm-up.")
@click.option("--min-lr", default=DEFAULTS["min_lr"], type=float, help="Learning rate the decay ends at.")
@click.option(
    "--decay", default=DEFAULTS["decay"], type=click.Choice(DECAYS), help="Shape of the decay after the warm-up."
)
@click.option("--weight-decay", default=DEFAULTS["weight_decay"], type=float, help="AdamW weight decay.")
@click.option("--warmup", default=DEFAULTS["warmup"], type=float, help="Share of the steps warming up (0..1).")
@click.option("--clip", default=DEFAULTS["clip"], type=float, help="Gradient-norm clipping (0 = off).")
@click.option(
    "--ema",
    default=DEFAULTS["ema"],
    type=float,
    help="EMA decay of the weights (0 = off), warmed up as min(EMA, (1 + step) / (10 + step)).",
)
@click.option("--loss", default=DEFAULTS["loss"], type=click.Choice(LOSS_NAMES), help="Supervised loss.")
@click.option(
    "--ssi-weight",
    default=DEFAULTS["ssi_weight"],
    type=float,
    help="finetune: weight of the SSI term (pixels without GT; in metric depth, residuals in metres).",
)
@click.option(
    "--gradient-weight",
    default=DEFAULTS["gradient_weight"],
    type=float,
    help="finetune: weight of SSI's multi-scale gradient-matching term.",
)
@click.option(
    "--trim",
    default=DEFAULTS["trim"],
    type=float,
    help="finetune: share of largest SSI residuals left out per image (MiDaS's ssitrim: 0.2; 0 = ssimae).",
)
@click.option(
    "--objective",
    default=DEFAULTS["objective"],
    type=click.Choice(OBJECTIVES),
    help="completion: the depth-completion network; bins-kd: distil the teacher into a light student with a "
    "depth-bin head (metric bins from the ground truth, bin probabilities from the teacher: teacher.png, "
    "or a generated sample's dense teacher depth).",
)
@click.option(
    "--student",
    default=DEFAULTS["student"],
    type=click.Choice(STUDENTS),
    help="bins-kd: completion (RGB + sparse LiDAR) or mono (RGB only).",
)
@click.option("--bins", default=DEFAULTS["bins"], type=int, help="bins-kd: depth bins per image (at least 2).")
@click.option(
    "--bin-range", default=DEFAULTS["bin_range"], type=(float, float), help="bins-kd: MIN MAX metres of the bins."
)
@click.option(
    "--temperature",
    default=DEFAULTS["temperature"],
    type=float,
    help="bins-kd: softness of the teacher's bin probabilities, in log depth (0.03: about 3% of depth).",
)
@click.option(
    "--chamfer-weight", default=DEFAULTS["chamfer_weight"], type=float, help="bins-kd: weight of the chamfer term."
)
@click.option("--kd-weight", default=DEFAULTS["kd_weight"], type=float, help="bins-kd: weight of the KL term.")
@click.option(
    "--view-relational",
    is_flag=True,
    help="bins-kd: also match the relations of adjacent views to the teacher's; batches whole scenes "
    "(--batch-size counts scenes) of shards made with `simlidar generate --rig`.",
)
@click.option(
    "--relational-weight",
    default=DEFAULTS["relational_weight"],
    type=float,
    help="bins-kd --view-relational: weight of the view-relational term.",
)
@click.option("--seed", default=DEFAULTS["seed"], type=int, help="Seed of weights, data order and augmentation.")
@click.option("--workers", default=DEFAULTS["workers"], type=int, help="Data-loader processes (at most one per shard).")
@click.option("--shuffle-buffer", default=DEFAULTS["shuffle_buffer"], type=int, help="Samples in the shuffle buffer.")
@click.option("--log-every", default=DEFAULTS["log_every"], type=int, help="Steps between log.csv rows.")
@click.option("--save-every", default=DEFAULTS["save_every"], type=int, help="Steps between checkpoints.")
@click.option(
    "--val-shards",
    default=None,
    help="Held-out shards (e.g. `convert kitti --split val`) for KITTI metrics in val.csv and best.pt by RMSE.",
)
@click.option("--val-every", default=DEFAULTS["val_every"], type=int, help="Steps between validations.")
@click.option(
    "--max-bad-samples",
    default=DEFAULTS["max_bad_samples"],
    type=float,
    help="Share of samples that may fail to decode (each skipped, in OUT/errors.jsonl) before the run stops.",
)
@click.option("--device", default=DEFAULTS["device"], help="auto (cuda, then mps, then cpu), or a torch device.")
@click.option("--overwrite", is_flag=True, help="Start the run in --out over (its checkpoints and logs are removed).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(stop_at, overwrite, quiet, crop, bin_range, out, **options) -> None:
    """Train the depth-completion model on shards; re-running the same command resumes.

    \b
    simlidar train --shards out/ --stage pretrain
    simlidar train --stage finetune --shards kitti_shards/ --init runs/pretrain/last.pt
    simlidar train --shards rig_shards/ --objective bins-kd --view-relational --out runs/student
    torchrun --nproc_per_node 8 --no-python simlidar train --shards out/   # DDP: a GPU per rank

    SIGINT (Ctrl-C) and SIGTERM save the step in progress once it is done; a second one stops at once.
    """
    config = TrainConfig(crop=tuple(crop), bin_range=tuple(bin_range), out=out or f"runs/{options['stage']}", **options)
    try:
        from .loop import train as run_train

        result = run_train(config, stop_at=stop_at, progress=not quiet, overwrite=overwrite)
    except KeyboardInterrupt as interrupt:
        _stopped(interrupt)
    except RankStopped:
        sys.exit(1)  # another torchrun rank said why
    if result["main"] and not result["done_before"]:
        click.echo(f"step {result['step']}: loss {result['loss']}; checkpoint {Path(config.out) / 'last.pt'}")


def _stopped(interrupt: KeyboardInterrupt) -> None:
    """One line for a run stopped by SIGINT or SIGTERM, then exit 128 + the signal's number."""
    name = getattr(interrupt, "signal", None) or "SIGTERM"
    if isinstance(interrupt, TrainingInterrupted):
        if interrupt.main:
            click.echo(
                f"stopped by {name} at step {interrupt.step}: saved {interrupt.checkpoint}; "
                "re-run the command to resume",
                err=True,
            )
    elif isinstance(interrupt, StoppedAtOnce) and interrupt.started:
        click.echo(f"stopped at once by a second {name}: the last checkpoint saved stays; re-run to resume", err=True)
    else:
        click.echo(f"stopped by {name} before training started: nothing new was saved", err=True)
    sys.exit(128 + signal.Signals[name].value)


@click.command("eval")
@click.option("--checkpoint", required=True, help="A checkpoint written by `simlidar train` (OUT/last.pt).")
@click.option("--shards", required=True, help="Shards to evaluate on; dense.png is the ground truth.")
@click.option("--out", default=None, help="Folder for metrics.json and previews/ [default: beside the checkpoint].")
@click.option("--previews", default=4, type=int, help="Pictures (RGB, prediction, truth, error) of the first N.")
@click.option("--no-ema", is_flag=True, help="Use the raw weights even when the checkpoint has EMA weights.")
@click.option("--device", default="auto", help="auto (cuda, then mps, then cpu), or a torch device.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def evaluate(checkpoint, shards, out, previews, no_ema, device, quiet) -> None:
    """KITTI depth-completion metrics (RMSE, MAE in mm; iRMSE, iMAE in 1/km; REL; delta<1.25)."""
    from .validate import evaluate as run_evaluate

    out = out or str(Path(checkpoint).parent / "eval")
    result = run_evaluate(checkpoint, shards, out, device, previews, use_ema=not no_ema, progress=not quiet)
    mean = result["mean"]
    skipped = f" ({len(result['skipped'])} samples skipped: they do not decode)" if result["skipped"] else ""
    click.echo(
        f"{result['images']} images{skipped}: RMSE {mean['rmse_mm']:.1f} mm, MAE {mean['mae_mm']:.1f} mm, "
        f"iRMSE {mean['irmse_per_km']:.2f} 1/km, iMAE {mean['imae_per_km']:.2f} 1/km, REL {mean['rel']:.4f}, "
        f"delta<1.25 {mean['delta1']:.4f}; written to {out}/metrics.json"
    )


@click.command("predict")
@click.option("--checkpoint", required=True, help="A checkpoint written by `simlidar train` (OUT/last.pt or best.pt).")
@click.option(
    "--images",
    required=True,
    help="A photo or a folder of photos (.jpg, .jpeg, .png), or shards (a folder of .tar, one .tar, a brace pattern).",
)
@click.option(
    "--sparse",
    default=None,
    help="Folder of the photos' sparse depth: 16-bit PNGs of metres x 256 named as the photos (KITTI's "
    "velodyne_raw), or NAME.sparse.png  [default: NAME.sparse.png beside each photo]",
)
@click.option("--out", required=True, help="Folder for KEY.png (uint16 metres x 256), previews/ and predictions.json.")
@click.option("--previews", default=10, type=click.IntRange(min=0), help="Preview pictures of the first N images.")
@click.option("--no-ema", is_flag=True, help="Use the raw weights even when the checkpoint has EMA weights.")
@click.option("--device", default="auto", help="auto (cuda, then mps, then cpu), or a torch device.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def predict(checkpoint, images, sparse, out, previews, no_ema, device, quiet) -> None:
    """Depth for photos with their sparse depth (or for the samples of shards), in KITTI's format, with
    previews; the numbers are `eval`'s for the same sample."""
    from .predict import is_shard_source
    from .predict import predict as run_predict

    if sparse is not None and is_shard_source(images):
        raise click.BadOptionUsage("sparse", "--sparse is for a folder of photos: shards carry their sparse.png")
    record = run_predict(checkpoint, images, out, sparse, device, previews, use_ema=not no_ema, progress=not quiet)
    click.echo(f"{len(record['written'])} depth maps ({record['weights']} weights, step {record['step']}) in {out}/")


@click.command("train")
@click.option("--shards", default="out/demo", help="Shards to read (`make demo` writes out/demo).")
@click.option("--width", default=32, type=int, help="Model width.")
@click.option("--batch-size", default=8, type=int, help="Samples per training step.")
@click.option("--crop", default=(256, 512), type=(int, int), help="Training crop H W.")
@click.option("--steps", default=10, type=int, help="Timed training steps (after 2 warm-up steps).")
@click.option("--samples", default=40, type=int, help="Timed loader samples.")
@click.option("--device", default="auto", help="auto (cuda, then mps, then cpu), or a torch device.")
def bench_train(shards, width, batch_size, crop, steps, samples, device) -> None:
    """Training samples/s, data-loader samples/s per worker, and the model's size and FPS at KITTI's 352x1216."""
    from .bench import run_bench

    for line in run_bench(shards, width, batch_size, tuple(crop), steps, samples, device):
        click.echo(line)


@click.command("ssi")
@click.option("--shards", default="out/demo", help="Generated shards (`make demo` writes out/demo).")
@click.option("--crop", default=(256, 512), type=(int, int), help="Crop H W of each sample.")
@click.option("--samples", default=8, type=int, help="Samples in the one batch measured.")
@click.option("--ssi-weight", default=DEFAULTS["ssi_weight"], type=float, help="Weight of the SSI term.")
@click.option("--trim", default=DEFAULTS["trim"], type=float, help="SSI's trimmed share.")
def bench_ssi(shards, crop, samples, ssi_weight, trim) -> None:
    """Per depth range, the gradient fine-tuning's SSI term puts on a pixel without ground truth next to the
    supervised L1's on a pixel with it (the LiDAR points as ground truth, a prediction 10 % off)."""
    from .bench import ssi_gradient_ratios

    for line in ssi_gradient_ratios(shards, tuple(crop), samples, ssi_weight, trim):
        click.echo(line)


@click.command("student")
@click.option("--width", default=16, type=int, help="Student width (channels of the first stage).")
@click.option("--bins", default=64, type=int, help="Depth bins of the students.")
@click.option("--frames", default=5, type=int, help="Timed frames per model (after 2 warm-up frames).")
@click.option("--device", default="auto", help="auto (cuda, then mps, then cpu), or a torch device.")
def bench_student(width, bins, frames, device) -> None:
    """Parameters and frames/s of the bin students next to Depth Anything V2 small (random weights), at 350x1218."""
    from .bench import run_student_bench

    for line in run_student_bench(width, bins, frames, device):
        click.echo(line)


@click.command("kd-target")
@click.option("--shards", required=True, help="Shards with ground truth (e.g. `simlidar convert rig`'s or KITTI's).")
@click.option("--bins", default=DEFAULTS["bins"], type=int, help="Depth bins.")
@click.option("--bin-range", default=DEFAULTS["bin_range"], type=(float, float), help="MIN MAX metres of the bins.")
@click.option("--frames", default=50, type=int, help="Frames to read.")
def bench_kd_target(shards, bins, bin_range, frames) -> None:
    """Expected and most likely depth of a perfect teacher's KD target vs the truth, per depth range and temperature."""
    from .kd_bench import run_kd_target_bench

    for line in run_kd_target_bench(shards, bins, tuple(bin_range), frames):
        click.echo(line)


# The training benches, by their name under `simlidar bench`.
BENCHES = {command.name: command for command in (bench_train, bench_ssi, bench_student, bench_kd_target)}
