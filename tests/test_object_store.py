"""Inputs and outputs beyond the local disk, against a real S3 server (moto's, on
127.0.0.1) with s3fs as the client: URL listing and staging, WebDataset shards of
images as input, and the output store's rules (whole uploads, exclusive create)."""

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import fsspec
import numpy as np
import pytest
from simlidar.pipeline.errors import PipelineError
from simlidar.pipeline.output.store import LocalStore, ObjectStore, open_store
from simlidar.pipeline.sources.image_shards import list_shard_samples
from simlidar.pipeline.sources.inputs import list_sources
from simlidar.pipeline.sources.photos import BadImage, list_inputs
from simlidar.pipeline.sources.remote import list_remote_inputs
from simlidar.pipeline.sources.urls import SCRATCH, filesystem, scratch_folder

from .helpers import REPO, write_photo

SCENES = REPO / "examples" / "scenes"


def upload_folder(local: Path, url: str) -> None:
    fs, path = filesystem(url)
    for file in sorted(local.rglob("*")):
        if file.is_file():
            fs.put_file(str(file), f"{path}/{file.relative_to(local).as_posix()}")


def write_image_shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    """A WebDataset tar as img2dataset writes one: KEY.EXT members, a sample's together."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for key, members in samples:
            for extension, data in members.items():
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def scene_members(name: str, meta: dict | None = None, caption: str | None = None) -> dict[str, bytes]:
    members = {"jpg": (SCENES / f"{name}.jpg").read_bytes(), "depth.png": (SCENES / f"{name}.depth.png").read_bytes()}
    if meta is not None:
        members["json"] = json.dumps(meta).encode()
    if caption is not None:
        members["txt"] = caption.encode()
    return members


def test_a_scheme_without_its_package_names_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "s3", raising=False)
    monkeypatch.setitem(sys.modules, "s3fs", None)
    with pytest.raises(PipelineError) as raised:
        filesystem("s3://bucket/photos")
    assert str(raised.value) == 's3:// locations need an optional package: pip install "simlidar[s3]"'


def test_credentials_in_a_url_are_refused_and_not_echoed(cli, tmp_path):
    with pytest.raises(PipelineError) as raised:
        filesystem("s3://AKIASECRET:hunter2@bucket/photos")
    assert "hunter2" not in str(raised.value) and "AKIASECRET" not in str(raised.value)
    photo_folder(tmp_path / "photos")
    for option in ("--out", "--cache", "--images"):
        args = {"--images": tmp_path / "photos", "--out": tmp_path / "out", option: "s3://AKIA:hunter2@bucket/x"}
        code, out, err = cli("generate", *[str(part) for pair in args.items() for part in pair], "--quiet")
        assert code == 2 and "must not carry credentials" in err and "hunter2" not in out + err, option
    with pytest.raises(PipelineError, match="not a filesystem fsspec knows"):
        filesystem("nosuchscheme://bucket/photos")


def photo_folder(root: Path) -> Path:
    """Nested photos with and without sidecars, a hidden folder and a non-image file."""
    depth = np.full((24, 32), 10.0, np.float32)
    write_photo(root / "a", "one.jpg", depth, K=np.array([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]]))
    write_photo(root / "b", "one.jpg", depth, seed=1)
    write_photo(root / ".hidden", "skip.jpg", depth, seed=2)
    shutil.copy(SCENES / "yard.jpg", root / "yard.jpg")
    (root / "notes.txt").write_text("not a photo")
    return root


def test_photos_on_s3_list_and_stage_as_the_same_folder_on_disk(tmp_path, bucket):
    local = photo_folder(tmp_path / "photos")
    upload_folder(local, f"{bucket}/photos")
    local_items, _ = list_inputs(str(local))
    remote_items, root = list_remote_inputs(f"{bucket}/photos/")
    assert root == f"{bucket}/photos"
    assert [(i.relpath, i.key) for i in remote_items] == [(i.relpath, i.key) for i in local_items]
    assert [i.relpath for i in remote_items] == ["a/one.jpg", "b/one.jpg", "yard.jpg"]
    assert [i.sidecars for i in remote_items] == [(".depth.png", ".json"), (".depth.png",), ()]
    assert [i.has_depth_sidecar() for i in remote_items] == [i.has_depth_sidecar() for i in local_items] == [1, 1, 0]
    staged = remote_items[0].stage(tmp_path / "scratch")
    assert staged.path.name == "one.jpg" and staged.source_meta is None
    for name in ("one.jpg", "one.depth.png", "one.json"):
        assert (staged.path.parent / name).read_bytes() == (local / "a" / name).read_bytes()
    glob_items, _ = list_sources(f"{bucket}/photos/**/one.jpg")
    assert [i.relpath for i in glob_items] == ["a/one.jpg", "b/one.jpg"]
    fsspec.filesystem("s3").pipe_file(f"{bucket[5:]}/photos/list.txt", b"# two\nyard.jpg\nb/one.jpg\n\n")
    listed, _ = list_sources(f"{bucket}/photos/list.txt")
    assert [(i.relpath, i.sidecars) for i in listed] == [("b/one.jpg", (".depth.png",)), ("yard.jpg", ())]


def test_missing_remote_inputs_are_one_line_errors(bucket):
    with pytest.raises(PipelineError, match="does not exist"):
        list_sources(f"{bucket}/nothing/")
    fsspec.filesystem("s3").pipe_file(f"{bucket[5:]}/coco-00000.tar", b"")
    with pytest.raises(PipelineError, match="input shard .*coco-00001.tar does not exist"):
        list_sources(f"{bucket}/coco-{{00000..00001}}.tar")


def image_shards(folder: Path) -> list[Path]:
    """Two shards: metadata json and captions as img2dataset writes them, a sample with
    intrinsics in its json, one without an image, and a __key__ present in both."""
    intrinsics = {"fx": 721.5377, "fy": 721.5377, "cx": 609.5593, "cy": 172.854}
    first = folder / "coco-00000.tar"
    write_image_shard(
        first,
        [
            ("000000001", scene_members("corridor", {"url": "http://x/1.jpg", "width": 640}, "a corridor")),
            ("000000002", scene_members("street_kitti", intrinsics)),
            ("000000003", {"json": b'{"status": "failed_to_download"}'}),
        ],
    )
    second = folder / "coco-00001.tar"
    write_image_shard(second, [("000000001", scene_members("yard", {"url": "http://x/9.jpg"}))])
    return [first, second]


def test_webdataset_shards_list_and_stage_the_same_on_disk_and_on_s3(tmp_path, bucket):
    shards = image_shards(tmp_path / "wds")
    upload_folder(tmp_path / "wds", f"{bucket}/wds")
    local, local_root = list_sources(str(tmp_path / "wds" / "coco-{00000..00001}.tar"))
    remote, remote_root = list_sources(f"{bucket}/wds/coco-{{00000..00001}}.tar")
    assert (local_root, remote_root) == (str(tmp_path / "wds"), f"{bucket}/wds")
    fields = [(s.relpath, s.key, s.members) for s in remote]
    assert fields == [(s.relpath, s.key, s.members) for s in local]
    duplicate = hashlib.sha1(b"coco-00000.tar/000000001").hexdigest()[:8]
    assert [s.relpath for s in remote] == [
        "coco-00000.tar/000000001",
        "coco-00000.tar/000000002",
        "coco-00001.tar/000000001",
    ]
    assert remote[0].key == f"000000001-{duplicate}" and remote[1].key == "000000002"
    assert all(sample.has_depth_sidecar() for sample in remote)
    corridor = remote[0].stage(tmp_path / "scratch")
    assert corridor.path.read_bytes() == (SCENES / "corridor.jpg").read_bytes()
    assert (corridor.path.parent / f"{remote[0].key}.depth.png").read_bytes() == (
        SCENES / "corridor.depth.png"
    ).read_bytes()
    assert corridor.source_meta == {"json": {"url": "http://x/1.jpg", "width": 640}, "txt": "a corridor"}
    assert not corridor.path.with_suffix(".json").exists()  # metadata, not intrinsics
    street = remote[1].stage(tmp_path / "scratch")
    assert json.loads(street.path.with_suffix(".json").read_text())["fx"] == 721.5377
    with tarfile.open(shards[1]) as tar:
        assert len(tar.getnames()) == 3


def test_damaged_image_shards(tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(PipelineError, match="bad.tar is not a readable tar"):
        list_shard_samples(str(bad))
    write_image_shard(tmp_path / "json.tar", [("k", {"jpg": (SCENES / "yard.jpg").read_bytes(), "json": b"{oops"})])
    (sample,), _ = list_shard_samples(str(tmp_path / "json.tar"))
    with pytest.raises(BadImage, match=r"k.json in json.tar is not valid JSON \(Expecting property name"):
        sample.stage(tmp_path / "scratch")
    write_image_shard(tmp_path / "cut.tar", [(f"k{i}", {"jpg": (SCENES / "yard.jpg").read_bytes()}) for i in range(3)])
    (tmp_path / "cut.tar").write_bytes((tmp_path / "cut.tar").read_bytes()[:100_000])  # inside the second image
    with pytest.raises(PipelineError, match="cut.tar is not a readable tar"):
        list_shard_samples(str(tmp_path / "cut.tar"))
    write_image_shard(tmp_path / "empty.tar", [])
    assert list_shard_samples(str(tmp_path / "empty.tar"))[0] == []


def test_the_output_store_on_s3_keeps_the_rules_of_a_folder(tmp_path, bucket):
    out = open_store(f"{bucket}/run/")
    assert isinstance(out, ObjectStore) and str(out) == f"{bucket}/run"
    assert open_store("file:///tmp/x") == LocalStore("/tmp/x") and open_store("out") == LocalStore("out")
    assert out.list_names() == [] and not out.is_file()
    pending = out.new_file("shard-000000.tar")
    pending.handle.write(b"x" * 3000)
    assert not out.exists("shard-000000.tar")  # nothing under the final name before the commit
    pending.commit()
    assert out.exists("shard-000000.tar") and not pending.temporary.exists()
    assert out.size_and_sha256("shard-000000.tar") == (3000, hashlib.sha256(b"x" * 3000).hexdigest())
    assert out.size_and_sha256("missing.tar") is None
    out.write_json_atomically("manifest.json", {"status": "running"})
    assert out.read_json("manifest.json") == {"status": "running"}
    assert out.create_exclusively("generate.lock", b"me")
    assert not out.create_exclusively("generate.lock", b"other")
    assert out.read_bytes("generate.lock") == b"me" and 0 <= out.age_s("generate.lock") < 60
    (tmp_path / "a.png").write_bytes(b"preview")
    out.upload(tmp_path / "a.png", "previews/a.png")
    assert out.list_names() == ["generate.lock", "manifest.json", "previews", "shard-000000.tar"]
    assert out.list_names("shard-*.tar") == ["shard-000000.tar"]
    with out.appending("generate.log") as local:
        local.write_text("first\n")
    with out.appending("generate.log") as local:
        local.write_text("second\n")
    assert out.read_bytes("generate.log") == b"first\nsecond\n" and not local.exists()
    out.remove_folder("previews")
    out.remove("generate.lock")
    out.remove("generate.lock")
    assert out.list_names() == ["generate.log", "manifest.json", "shard-000000.tar"]
    discarded = out.new_file("shard-000001.tar")
    discarded.discard()
    assert not discarded.temporary.exists() and not out.exists("shard-000001.tar")


def test_a_local_store_keeps_the_same_rules(tmp_path):
    out = open_store(tmp_path / "run")
    out.make_folder()
    pending = out.new_file("shard-000000.tar")
    pending.handle.write(b"x" * 3000)
    assert out.list_names() == [pending.temporary.name] and not out.exists("shard-000000.tar")
    pending.commit()
    assert out.list_names() == ["shard-000000.tar"] and out.size_and_sha256("shard-000000.tar")[0] == 3000
    os.mkfifo(tmp_path / "run" / "fifo")
    assert out.size_and_sha256("fifo") is None and out.size_and_sha256("missing") is None  # a FIFO is never opened
    assert out.create_exclusively("generate.lock", b"me") and not out.create_exclusively("generate.lock", b"x")
    with out.appending("generate.log") as local:
        local.write_text("one line\n")
    assert out.read_bytes("generate.log") == b"one line\n" and out.local_copy() is out


def test_training_lists_and_streams_shards_from_s3(tmp_path, bucket):
    import webdataset as wds
    from simlidar.train.errors import TrainError
    from simlidar.train.shards import list_shards

    for index in range(2):
        write_image_shard(tmp_path / "out" / f"shard-{index:06d}.tar", [(f"k{index}", {"jpg": b"abc", "json": b"{}"})])
    (tmp_path / "out" / "manifest.json").write_text("{}")
    upload_folder(tmp_path / "out", f"{bucket}/out")
    urls = list_shards(f"{bucket}/out/")
    assert urls == [f"{bucket}/out/shard-000000.tar", f"{bucket}/out/shard-000001.tar"]
    assert list_shards(urls[1]) == [urls[1]]
    assert [sample["__key__"] for sample in wds.WebDataset(urls, shardshuffle=False)] == ["k0", "k1"]
    with pytest.raises(TrainError, match="no shards"):
        list_shards(f"{bucket}/nothing/")


def street_photo_members(folder: Path, index: int) -> dict[str, bytes]:
    """A small photo of a street-like depth (a box whose place depends on `index`) as shard members."""
    depth = np.full((120, 160), 15.0, np.float32)
    depth[60:] = np.linspace(15.0, 3.0, 60)[:, None]
    depth[30:75, 10 + 15 * index : 45 + 15 * index] = 5.0
    photo = write_photo(folder, f"{index}.jpg", depth, seed=index)
    meta = json.dumps({"url": f"http://example.com/{index}.jpg", "caption": f"street {index}"}).encode()
    return {"jpg": photo.read_bytes(), "depth.png": photo.with_name(f"{index}.depth.png").read_bytes(), "json": meta}


def s3_shards(fs, url: str) -> dict[str, bytes]:
    path = url.removeprefix("s3://")
    fs.invalidate_cache()
    return {found.rsplit("/", 1)[1]: fs.cat_file(found) for found in sorted(fs.glob(f"{path}/shard-*.tar"))}


def input_shards(folder: Path) -> None:
    """Two WebDataset shards of three small street photos each, with depth and metadata."""
    for shard in range(2):
        samples = [(f"{shard:02d}{i:03d}", street_photo_members(folder / "photos", 3 * shard + i)) for i in range(3)]
        write_image_shard(folder / "wds" / f"in-{shard}.tar", samples)


def test_generate_from_shards_on_s3_writes_the_bytes_of_the_same_shards_on_disk(cli, tmp_path, bucket):
    input_shards(tmp_path)
    upload_folder(tmp_path / "wds", f"{bucket}/wds")
    options = ["--fov", "80", "--shard-size", "4", "--quiet", "--workers", "1"]
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert cli("generate", "--images", tmp_path / "wds" / "in-{0..1}.tar", "--out", local, *options)[0] == 0
    code, _, err = cli("generate", "--images", f"{bucket}/wds/in-{{0..1}}.tar", "--out", remote, *options)
    assert code == 0, err
    for name in ("shard-000000.tar", "shard-000001.tar", "errors.jsonl"):
        assert (local / name).read_bytes() == (remote / name).read_bytes()
    with tarfile.open(local / "shard-000001.tar") as tar:
        assert tar.getnames()[0] == "01001-v0.jpg"
        meta = json.loads(tar.extractfile("01001-v0.json").read())
    assert meta["source_path"] == "in-1.tar/01001" and meta["source_meta"]["json"]["caption"] == "street 4"


@pytest.mark.slow
def test_generate_from_s3_shards_into_s3_resumes_after_a_kill_to_the_bytes_of_a_local_run(cli, tmp_path, bucket):
    input_shards(tmp_path)
    upload_folder(tmp_path / "wds", f"{bucket}/wds")
    options = ["--fov", "80", "--shard-size", "2", "--quiet"]
    reference = tmp_path / "reference"
    code, _, err = cli(
        "generate", "--images", tmp_path / "wds" / "in-{0..1}.tar", "--out", reference, *options, "--workers", "1"
    )
    assert code == 0, err
    expected = {path.name: path.read_bytes() for path in sorted(reference.glob("shard-*.tar"))}
    assert len(expected) == 3

    out = f"{bucket}/out"
    command = [sys.executable, "-c", "from simlidar.pipeline.cli import main; main()", "generate"]
    inputs = f"{bucket}/wds/in-{{0..1}}.tar"
    command += ["--images", inputs, "--out", out, *options, "--workers", "1"]
    process = subprocess.Popen(command, env=os.environ.copy())
    fs = fsspec.filesystem("s3")
    deadline = time.monotonic() + 120
    while process.poll() is None and not fs.exists(f"{out[5:]}/shard-000000.stats.json"):
        assert time.monotonic() < deadline, "the first shard never finished"
        fs.invalidate_cache()
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    finished = s3_shards(fs, out)
    assert 1 <= len(finished) < 3 and all(expected[name] == data for name, data in finished.items())
    assert json.loads(fs.cat_file(f"{out[5:]}/generate.lock"))["pid"] == process.pid  # left by the killed run

    code, _, err = cli("generate", "--images", inputs, "--out", out, *options, "--workers", "2")
    assert code == 0, err
    assert s3_shards(fs, out) == expected and not fs.exists(f"{out[5:]}/generate.lock")
    manifest = json.loads(fs.cat_file(f"{out[5:]}/manifest.json"))
    assert manifest["status"] == "complete" and manifest["totals"]["samples"] == 6
    assert not [name for name in fs.find(out[5:]) if name.endswith(".tmp")]
    with tarfile.open(fileobj=io.BytesIO(expected["shard-000000.tar"])) as tar:
        meta = json.loads(tar.extractfile("00000-v0.json").read())
    assert meta["source_meta"] == {"json": {"url": "http://example.com/0.jpg", "caption": "street 0"}}
    assert meta["source_path"] == "in-0.tar/00000"

    code, printed, err = cli("inspect", "--shards", out)
    assert code == 0, err
    assert "6 samples in 3 shards" in printed and fs.exists(f"{out[5:]}/previews/contact_sheet.png")
    code, printed, err = cli("publish", "--shards", out, "--repo", "me/streets", "--dry-run")
    assert code == 0, err
    staged = Path(printed.split("staged ", 1)[1].split("/ (", 1)[0])
    assert sorted(path.name for path in (staged / "data" / "train").iterdir()) == sorted(expected)
    tiny = ["--batch-size", "2", "--crop", "32", "64", "--workers", "0", "--width", "4", "--quiet"]
    code, printed, err = cli("train", "--shards", out, "--steps", "2", "--out", tmp_path / "run", *tiny)
    assert code == 0, err
    assert "step 2" in printed and (tmp_path / "run" / "last.pt").is_file()

    damaged = bytearray(expected["shard-000001.tar"])
    damaged[1000] ^= 0xFF
    fs.pipe_file(f"{out[5:]}/shard-000001.tar", bytes(damaged))
    code, printed, err = cli("generate", "--images", inputs, "--out", out, "--fov", "80", "--shard-size", "2")
    assert code == 0, err
    assert "made shard-000001 again: shard-000001.tar's SHA-256 differs from its stats" in err
    assert s3_shards(fs, out) == expected


def test_a_second_run_on_an_output_on_s3_is_refused_while_the_first_holds_it(cli, tmp_path, bucket):
    from simlidar.pipeline.output.lock import OutputLock

    photo_folder(tmp_path / "photos")
    with OutputLock(open_store(f"{bucket}/out")):
        code, _, err = cli("generate", "--images", tmp_path / "photos", "--out", f"{bucket}/out", "--quiet")
    assert code == 1 and f"{bucket}/out is in use by another simlidar run (pid {os.getpid()} on " in err
    run = ["generate", "--images", tmp_path / "photos", "--out", f"{bucket}/out", "--quiet", "--workers", "1"]
    assert cli(*run, "--fov", "80")[0] == 0
    code, _, err = cli(*run, "--fov", "70")
    assert code == 1 and "out holds a different run (fov_deg: 80.0 -> 70.0)" in err
    assert cli(*run, "--fov", "70", "--overwrite")[0] == 0
    manifest = open_store(f"{bucket}/out").read_json("manifest.json")
    assert manifest["config"]["fov_deg"] == 70.0 and manifest["totals"]["samples"] == 2  # yard.jpg has no depth


def test_a_local_copy_of_an_output_on_s3_fetches_listed_shards_once(tmp_path, bucket):
    from simlidar.pipeline.output.mirror import download_output

    out = open_store(f"{bucket}/run")
    shard = b"tar bytes" * 100
    entries = [
        {"shard": "shard-000000.tar", "bytes": len(shard), "sha256": hashlib.sha256(shard).hexdigest()},
        {"shard": "../../outside.tar", "bytes": 1, "sha256": "0"},
        {"shard": "shard-000001.tar", "bytes": 1, "sha256": "0"},
    ]
    out.write_json_atomically("manifest.json", {"shards": entries})
    out.write_atomically("shard-000000.tar", shard)
    copy = download_output(out, tmp_path / "copy")
    assert sorted(path.name for path in copy.iterdir()) == ["manifest.json", "shard-000000.tar"]
    assert (copy / "shard-000000.tar").read_bytes() == shard and not (tmp_path / "outside.tar").exists()
    out.write_atomically("shard-000000.tar", b"changed after the copy")
    assert (download_output(out, copy) / "shard-000000.tar").read_bytes() == shard  # matches the manifest: kept
    with pytest.raises(PipelineError, match="has no manifest.json"):
        download_output(open_store(f"{bucket}/nothing"), tmp_path / "other")


def test_scratch_folders_of_dead_processes_are_removed(tmp_path, monkeypatch):
    import socket
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left_over = tmp_path / SCRATCH / f"{socket.gethostname()}-{int(dead.stdout)}"
    (left_over / "inputs").mkdir(parents=True)
    alive = tmp_path / SCRATCH / f"{socket.gethostname()}-1"
    alive.mkdir()
    mine = scratch_folder()
    assert mine.name == f"{socket.gethostname()}-{os.getpid()}" and mine.is_dir()
    assert not left_over.exists() and alive.is_dir()


def test_a_listed_photo_missing_on_the_store_is_recorded_not_fatal(tmp_path, bucket):
    fs = fsspec.filesystem("s3")
    fs.put_file(str(SCENES / "yard.jpg"), f"{bucket[5:]}/photos/yard.jpg")
    fs.pipe_file(f"{bucket[5:]}/photos/list.txt", b"yard.jpg\nmissing.jpg\ngone/away.jpg\n")
    items, _ = list_sources(f"{bucket}/photos/list.txt")
    assert [item.relpath for item in items] == ["gone/away.jpg", "missing.jpg", "yard.jpg"]
    with pytest.raises(BadImage, match="no such file on the store"):
        items[1].stage(tmp_path)
    assert items[2].stage(tmp_path).path.read_bytes() == (SCENES / "yard.jpg").read_bytes()


def test_the_teacher_cache_lives_on_s3_beside_an_output_there(tmp_path, bucket, monkeypatch):
    import huggingface_hub.constants
    from PIL import Image
    from simlidar.pipeline.stages.teacher import CachedTeacher, TeacherCache, teacher_cache_dir
    from simlidar.teachers import TeacherInput, load_teacher

    from .tiny_models import save_to_hub_cache, tiny_depth_anything

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    save_to_hub_cache(tmp_path / "hub", "depth-anything/Depth-Anything-V2-Small-hf", *tiny_depth_anything())
    teacher = load_teacher("depth-anything-v2-small", device="cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "p.png")
    root = teacher_cache_dir("", open_store(f"{bucket}/out"))
    assert root == f"{bucket}/out/teacher-cache" and teacher_cache_dir("~/c", open_store(tmp_path)).startswith("/")
    first = CachedTeacher(teacher, TeacherCache(root))
    computed = first.predict([TeacherInput(tmp_path / "p.png", rgb)])[0]
    again = CachedTeacher(teacher, TeacherCache(root))
    cached = again.predict([TeacherInput(tmp_path / "p.png", rgb)])[0]
    assert (first.misses, again.hits) == (1, 1) and np.array_equal(cached.depth, computed.depth)
    assert fsspec.filesystem("s3").find(f"{bucket[5:]}/out/teacher-cache")


def test_an_output_in_a_bucket_that_does_not_exist_is_one_line(cli, tmp_path, s3_server):
    photo_folder(tmp_path / "photos")
    code, _, err = cli("generate", "--images", tmp_path / "photos", "--out", "s3://no-such-bucket-here/out", "--quiet")
    assert err.startswith("error: cannot write to s3://no-such-bucket-here/out (") and err.count("\n") == 1
    assert code == 1
