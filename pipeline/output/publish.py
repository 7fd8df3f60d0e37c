"""`simlidar publish`: check an output as `inspect` does, stage it in the Hub's layout
(shards under data/SPLIT/, a dataset card, the preview picture) and upload it with
huggingface_hub's upload_folder.

Staging goes to OUT/hub.tmp and is renamed to OUT/hub when complete, so a failed or
interrupted run never leaves a half-written staging folder. Shards are hard-linked
when the file system allows (no copy of a large dataset). The upload sends only what
the Hub does not already hold, so re-running an interrupted upload resumes it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from importlib import metadata
from pathlib import Path

from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

from .. import schema
from ..errors import OptionError, PipelineError
from .card import reading_depth
from .inspect import CONTACT_SHEET, PREVIEWS, Inspection, inspect_output
from .manifest import MANIFEST, describe_sources

STAGING = "hub"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SPLIT = re.compile(r"^[A-Za-z0-9_]+$")
# Member names the `datasets` webdataset builder turns into columns: lowercase parts
# separated by dots; the last part picks the decoder (image, json, npy).
_MEMBER = re.compile(r"^[a-z0-9]+(\.[a-z0-9]+)*$")
_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))

CITATION = """@inproceedings{liang2025dmd3c,
  title     = {Distilling Monocular Foundation Model for Fine-grained Depth Completion},
  author    = {Liang, Yingping and Hu, Yutao and Shao, Wenqi and Fu, Ying},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2025}
}"""


# Licence ids of the Hub's list (hf.co/docs/hub/repositories-licenses) that are not SPDX ids.
HUB_LICENCES = {
    "other", "unknown", "openrail", "openrail++", "bigscience-openrail-m", "creativeml-openrail-m",
    "bigcode-openrail-m", "bigscience-bloom-rail-1.0", "cc", "c-uda", "gpl", "lgpl-lr", "bsd", "deepfloyd-if-license",
    "llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4", "gemma", "apple-amlr", "apple-ascl",
    "fair-noncommercial-research-license", "intel-research", "h-research", "etalab-2.0", "cdla-permissive-2.0",
}  # fmt: skip


# The card's licence when `publish` is not given one; the card then says so (UNSET_LICENCE_NOTE).
UNSET_LICENCE = "other"
UNSET_LICENCE_NOTE = (
    "> **Licence not set**: this card says `other` because no licence was given when it was published. The data "
    "carries the licence of its photos and the teacher's terms (see the table below).\n\n"
)


class PublishError(PipelineError):
    """The output cannot be published as it is, or the Hub cannot be reached."""


def check_licence(licence: str) -> None:
    """Refuse a --license the Hub would not know: one SPDX id in lower case (cc-by-4.0, mit)
    or one of the Hub's own ids (other, openrail, llama3, ...)."""
    try:
        spdx = canonicalize_license_expression(licence)
    except InvalidLicenseExpression:
        spdx = ""
    single = spdx and " " not in spdx and not spdx.startswith("LicenseRef-") and licence == licence.lower()
    if not (single or licence in HUB_LICENCES):
        raise OptionError(
            f"`licence` {licence!r} is not a licence id the Hub knows: give an SPDX id in lower case (cc-by-4.0, "
            "apache-2.0, mit, ...), one of the Hub's own (openrail, llama3, ...), or other"
        )


def stage(out_dir: Path, repo_id: str, licence: str | None, split: str = "train", revision: str = "main") -> Path:
    """Check `out_dir` and write OUT/hub (data/SPLIT/*.tar, README.md, manifest.json,
    previews/); the card's links point at `revision`; licence None: not given (the card
    warns). Returns the staging folder."""
    check_licence(licence or UNSET_LICENCE)
    if not _REPO_ID.match(repo_id):
        raise OptionError(f"`repo` {repo_id!r} is not a Hub repo id; write USER/NAME or ORG/NAME")
    if not _SPLIT.match(split):
        raise OptionError(f"`split` {split!r}: use letters, digits and underscores (train, validation, test)")
    report = inspect_output(out_dir)
    if report.problems:
        raise PublishError(
            f"{out_dir} has {len(report.problems)} problems (first: {report.problems[0]}); "
            "run `simlidar inspect` on it and fix them before publishing"
        )
    if not isinstance(report.manifest.get("made_by"), dict):
        raise PublishError(
            f"{MANIFEST} does not say what made the output (an older simlidar wrote it); re-run the command "
            "that made it on the same folder to record that, then publish"
        )
    refused = hub_name_problems(report)
    if refused:
        raise PublishError(f"the Hub or `datasets` would reject {refused[0]}; regenerate with simlidar {_version()}")
    staging, temporary = out_dir / STAGING, out_dir / f"{STAGING}.tmp"
    if staging.is_file():
        raise PublishError(f"{staging} is a file, not a staging folder; move it away and publish again")
    _remove_tree(temporary)
    try:
        _write_staging(out_dir, temporary, report, (repo_id, licence, split, revision))
    except BaseException as error:
        _remove_tree(temporary)
        if isinstance(error, OSError):
            raise PublishError(f"cannot stage {staging} ({error.strerror or error}); fix {out_dir} and retry") from None
        raise
    _remove_tree(staging)
    os.replace(temporary, staging)
    return staging


def _write_staging(out_dir: Path, temporary: Path, report: Inspection, card: tuple[str, str, str, str]) -> None:
    """The staging folder's content; card: (repo_id, licence, split, revision)."""
    split = card[2]
    (temporary / "data" / split).mkdir(parents=True)
    for shard in report.shards:
        _link_or_copy(out_dir / shard["shard"], temporary / "data" / split / shard["shard"])
    (temporary / PREVIEWS).mkdir()
    preview = out_dir / PREVIEWS / CONTACT_SHEET
    if preview.is_file():
        shutil.copy2(preview, temporary / PREVIEWS / CONTACT_SHEET)
    shutil.copy2(out_dir / MANIFEST, temporary / MANIFEST)
    repo_id, licence, _, revision = card
    (temporary / "README.md").write_text(dataset_card(report, repo_id, licence, split, preview.is_file(), revision))


def _remove_tree(path: Path) -> None:
    """Remove a folder or a file left at `path`, if any."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def hub_name_problems(report: Inspection) -> list[str]:
    """Keys or member names that the Hub's viewer or `datasets` would refuse or
    misread, and samples whose members differ (every sample must have the same columns)."""
    problems = [f"sample key {key!r} (keys are [A-Za-z0-9_-]+)" for key in report.keys if not schema.is_valid_key(key)]
    names = sorted({name for members in report.member_sets for name in members})
    problems += [
        f"member name {name!r} (members are lowercase, dot-separated)" for name in names if not _MEMBER.match(name)
    ]
    if len(report.member_sets) > 1:
        variants = " vs ".join(",".join(sorted(members)) for members in report.member_sets)
        problems.append(f"samples with different members ({variants})")
    return problems


CARD_BODY = """# {name}

LiDAR depth-completion training pairs made by [simlidar](https://pypi.org/project/simlidar/) {version}
(`{command}`) {summary}

{licence_note}{preview}## How it was made

| | |
| --- | --- |
{made_with}

The full run config and per-shard checksums are in `manifest.json`.

## Sample layout

| member | content |
| --- | --- |
{members}

Camera frame: OpenCV (x right, y down, z forward). LiDAR frame: x forward, y left, z up.

## Loading

With `datasets`:

```python
import numpy as np
from datasets import load_dataset

dataset = load_dataset("{repo_id}", split="{split}", streaming=True)
sample = next(iter(dataset))
sparse_m = np.asarray(sample["sparse.png"], dtype=np.float32) / 256.0
dense_m = np.asarray(sample["dense.png"], dtype=np.float32) / 256.0
print(sample["__key__"], (sparse_m > 0).sum(), "LiDAR pixels", sample["json"]["sensor"]["name"])
```

With `webdataset` (streaming the tars over HTTP):

{reading}

## Citation

The data generation follows DMD3C:

```bibtex
{citation}
```
"""


def dataset_card(
    report: Inspection, repo_id: str, licence: str | None, split: str, with_preview: bool, revision: str = "main"
) -> str:
    """A Hugging Face dataset card: YAML metadata the Hub and `datasets` read, and a body
    made from the manifest; its download links point at `revision`, the branch it is
    uploaded to; licence None: not given (`other`, and a warning at the top)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    manifest, stats = report.manifest, report.stats()
    made_by, samples = manifest["made_by"], manifest["totals"]["samples"]
    sensor = manifest["sensor"]["name"]
    size_category = next((label for limit, label in _SIZE_CATEGORIES if samples < limit), "1M<n<10M")
    data = DatasetCardData(
        license=licence or UNSET_LICENCE,
        task_categories=["depth-estimation"],
        size_categories=[size_category],
        tags=["lidar", "depth-completion", "webdataset", *made_by["tags"], sensor],
        pretty_name=f"{repo_id.split('/')[1]} (simlidar, {sensor})",
        configs=[{"config_name": "default", "data_files": [{"split": split, "path": f"data/{split}/*.tar"}]}],
    )
    preview = f"![samples: RGB, LiDAR, dense depth]({PREVIEWS}/{CONTACT_SHEET})\n\n" if with_preview else ""
    body = CARD_BODY.format(
        name=repo_id.split("/")[1],
        version=_version(),
        command=made_by["command"],
        summary=made_by["summary"],
        licence_note="" if licence else UNSET_LICENCE_NOTE,
        preview=preview,
        made_with=_table(_made_with(manifest, stats)),
        members=_table([[f"`{member}`", content] for member, content in made_by["members"]]),
        repo_id=repo_id,
        split=split,
        revision=revision,
        reading=_reading(repo_id, revision, split, _shard_pattern([shard["shard"] for shard in report.shards])),
        citation=CITATION,
    )
    return str(DatasetCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + body))


def _reading(repo_id: str, revision: str, split: str, shard_pattern: str) -> str:
    """The card's webdataset section: the shards streamed with the Hub token, simlidar's decoder."""
    url = f"https://huggingface.co/datasets/{repo_id}/resolve/{revision}/data/{split}/{shard_pattern}"
    setup = f'from huggingface_hub import get_token\n\nurl = "{url}"'
    return reading_depth("f\"pipe:curl -s -L {url} -H 'Authorization:Bearer {get_token()}'\"", setup)


def _table(rows: list) -> str:
    return "\n".join(f"| {name} | {value} |" for name, value in rows)


def _made_with(manifest: dict, stats: dict) -> list:
    """The card's "How it was made" rows: what every output has, and what made this one (the
    teacher and the intrinsics as they resolved, per sample, where the manifest counts them)."""
    config, totals = manifest["config"], manifest["totals"]
    samples = totals["samples"]
    density = stats["sparse_density"]["mean"] if samples else 0.0
    resolved = manifest.get("resolved", {})
    sources = describe_sources(resolved) if resolved else {}
    used = resolved.get("teacher") or {config.get("teacher") or "none": samples}
    teacher = "; ".join(
        f"`{name}` ({_teacher_licence(name)}): {count} of {samples} samples" for name, count in used.items()
    )
    if (config.get("teacher") or "none") not in used:
        teacher = f"`--teacher {config['teacher']}` resolved to {teacher}"
    rows = [[name, f"{value}: {sources['intrinsics']}" if name == "intrinsics" and sources else value]
            for name, value in manifest["made_by"]["rows"]]  # fmt: skip
    return [
        [
            "samples",
            f"{samples} from {totals['images_written']} {manifest['made_by']['unit']} "
            f"({totals['images_skipped']} skipped), "
            f"{stats['shards']} shards",
        ],
        ["teacher", teacher],
        *rows,
        ["points per sample", f"{totals['points_per_sample']:.0f}; {100 * density:.2f}% of pixels get a depth"],
    ]


def upload(staging: Path, repo_id: str, private: bool, revision: str | None) -> str:
    """Upload the staging folder to the dataset repo (created if missing); returns the
    commit URL. The token comes from HF_TOKEN or `hf auth login` and is never shown."""
    import httpx2
    from huggingface_hub import DatasetCard, HfApi, constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise PublishError(
            "HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it where the network is, "
            f"or look at the staged dataset in {staging}"
        )
    token = get_token()
    if not token:
        raise PublishError(
            "not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN, "
            f"or use `dry_run` to stage only (staged in {staging})"
        )
    api = HfApi(token=token)
    samples = json.loads((staging / MANIFEST).read_text())["totals"]["samples"]
    try:
        DatasetCard.load(staging / "README.md", repo_type="dataset").validate(repo_type="dataset")
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=staging,
            repo_type="dataset",
            revision=revision,
            commit_message=f"simlidar {_version()}: {samples} samples",
        )
    except (httpx2.HTTPError, OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PublishError(
            f"upload to {repo_id} failed ({reason}); the staged dataset is kept in {staging}: "
            "re-run the same command to resume"
        ) from None
    return commit.commit_url


def _shard_pattern(names: list[str]) -> str:
    """shard-{000000..000041}.tar for consecutive shards (webdataset's brace notation)."""
    if len(names) == 1:
        return names[0]
    first, last = (
        names[0].removeprefix("shard-").removesuffix(".tar"),
        names[-1].removeprefix("shard-").removesuffix(".tar"),
    )
    return f"shard-{{{first}..{last}}}.tar"


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _teacher_licence(teacher: str) -> str:
    from simlidar.teachers.registry import MODELS

    if teacher in MODELS:
        return f"weights licence: {MODELS[teacher].licence}"
    if teacher == "sidecar":
        return "depth supplied beside each photo"
    if teacher == "none":
        return "no teacher"
    return "see the model card for its licence"


def _version() -> str:
    try:
        return metadata.version("simlidar")
    except metadata.PackageNotFoundError:
        return "(development)"
