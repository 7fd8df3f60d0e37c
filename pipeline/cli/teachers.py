"""`simlidar teachers`: the depth models a run can use, and fetching their weights
ahead of a run (for clusters whose nodes cannot reach the Hub)."""

from __future__ import annotations

import click
from simlidar.teachers import DEFAULT_MODEL, MODELS, TeacherError, TeacherUnavailable, check_teacher_name
from simlidar.teachers.registry import HF_PREFIX, is_hf_name

from .grammar import check_teacher


@click.group()
def teachers() -> None:
    """List the depth teachers and download their weights into the Hugging Face cache."""


@teachers.command("list")
def list_teachers() -> None:
    """Name, output kind, size, weights licence and whether the weights are in the local cache."""
    from simlidar.teachers.hf import fetch_weights

    click.echo(f"{'name':<40}{'output':<11}{'params':>9}{'fp32 MB':>9}  {'licence':<14}{'cached':<8}repo")
    for entry in MODELS.values():
        try:
            fetch_weights(entry.name, entry.repo_id, entry.revision, download=False)
            cached = "yes"
        except TeacherUnavailable:
            cached = "no"
        default = " (default)" if entry.name == DEFAULT_MODEL else ""
        click.echo(
            f"{entry.name:<40}{entry.output:<11}{entry.params_m:>8.1f}M{entry.params_m * 4:>9.0f}  "
            f"{entry.licence:<14}{cached:<8}{entry.repo_id}{default}"
        )
    click.echo(
        "also: sidecar (photo.depth.png / .npy beside each photo), auto (a sidecar where there is one, else "
        f"{DEFAULT_MODEL}), hf:ORG/NAME with --teacher-output metric|disparity|depth. disparity and depth "
        "outputs are relative: generate maps them to metres (--depth-range)."
    )


@teachers.command()
@click.argument("name", callback=check_teacher)
@click.option("--revision", default="", show_default=False, help="Branch, tag or commit [default: the registry's].")
def pull(name: str, revision: str) -> None:
    """Download NAME's weights into the Hugging Face cache (HF_HOME), e.g. on a login node
    before an offline cluster run."""
    from simlidar.teachers.hf import fetch_weights

    if name == "auto":
        name = DEFAULT_MODEL
    if name == "sidecar":
        raise TeacherError("the sidecar teacher reads depth files beside the photos; it has no weights to pull")
    if is_hf_name(name):
        check_teacher_name(name, "depth")
        model_id, default_revision = name[len(HF_PREFIX) :], "main"
    else:
        check_teacher_name(name)
        model_id, default_revision = MODELS[name].repo_id, MODELS[name].revision
    folder, resolved = fetch_weights(name, model_id, revision or default_revision)
    click.echo(f"{name}: {model_id} at {resolved} in {folder}")
