"""The text that says how to read an output with stock tools: the depth decoders (and what the
stock ones do to 16-bit depth), shared by `publish`'s dataset card, and the output folder's own
README.md, whose YAML tells `datasets.load_dataset(OUT)` that the shards are the data."""

from __future__ import annotations

FOLDER_CARD = "README.md"
# The card's first body line: a README.md without it is the user's, never replaced.
_MADE_BY_SIMLIDAR = "<!-- written by simlidar: replaced at each run -->"

_WARNING = """Depth (`sparse.png`, `dense.png`) is a 16-bit PNG of round(metres x 256), 0 = no depth
(KITTI's convention); `teacher.png` is a teacher's disparity, min-max normalised per image to
1..65535, 0 = none (the json's `teacher_relative` holds the range).
**Do not decode them with webdataset's `.decode("pil")`, `"rgb"`, `"torchrgb"` or `"l"`:
those squeeze 16 bits into 8 bits or 0..1 and the metres are lost without an error.**
Pass simlidar's handler first; it gives float32 metres (0 = no depth, kept as 0):"""

_LOOP = """for sample in dataset:
    sparse_m, dense_m = sample["sparse.png"], sample["dense.png"]  # (H, W) float32 metres, 0 = none
    print(sample["__key__"], (sparse_m > 0).sum(), "LiDAR pixels, farthest", dense_m.max(), "m")
    if "teacher.png" in sample:  # normalised disparity, NaN = none; metres when the teacher was metric
        teacher_m = teacher_depth_m(sample["teacher.png"], sample["json"]["teacher_relative"])"""


def reading_depth(shards: str, setup: str = "") -> str:
    """Markdown: what the depth PNGs hold, the warning about stock decoders and a webdataset
    snippet with simlidar's handler reading `shards` (a Python expression) after `setup` lines."""
    code = [
        "import webdataset as wds",
        "from simlidar.pipeline.schema import teacher_depth_m, webdataset_depth",
        *([setup] if setup else []),
        "",
        f'dataset = wds.WebDataset({shards}, shardshuffle=False).decode(webdataset_depth, "rgb")',
        _LOOP,
    ]
    without = (
        "Without simlidar, decode the PNG bytes yourself: "
        "`np.asarray(PIL.Image.open(io.BytesIO(png)), dtype=np.float32) / 256.0`."
    )
    return _WARNING + "\n\n```python\n" + "\n".join(code) + "\n```\n\n" + without


_FOLDER_BODY = """{marker}
# LiDAR depth-completion pairs ({sensor})

LiDAR depth-completion pairs written by `{command}` ({samples} samples in {shards} WebDataset
shards; `manifest.json` records the run). This card's `configs` make
`datasets.load_dataset("path/to/this/folder")` read the shards (`shard-*.tar`) and nothing else; depth comes
back as 16-bit images (`np.asarray(row["sparse.png"], dtype=np.float32) / 256` is metres).

## Reading the depth

{reading}
"""


def folder_card(manifest: dict) -> str:
    """The README.md of an output folder: `datasets`' configs (the shards are
    the one split, train) and how to read the depth; `manifest` is the finished run's."""
    front = '---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: "shard-*.tar"\n---\n'
    body = _FOLDER_BODY.format(
        marker=_MADE_BY_SIMLIDAR,
        sensor=manifest["sensor"]["name"],
        command=manifest["command"],
        samples=manifest["totals"]["samples"],
        shards=len(manifest["shards"]),
        reading=reading_depth(f'"shard-{{000000..{max(len(manifest["shards"]) - 1, 0):06d}}}.tar"'),
    )
    return front + body


def is_ours(text: str) -> bool:
    """Whether a README.md found in an output folder is a card simlidar wrote."""
    return _MADE_BY_SIMLIDAR in text
