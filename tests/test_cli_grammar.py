"""One CLI grammar: every command's help renders clean, usage errors exit 2 and failures of the
data or the run exit 1, misspelt names get suggestions, renamed flags and commands keep working
hidden, benches run from any folder, and a run says what its options resolved to."""

import json

import click
import numpy as np
import pytest
from huggingface_hub import DatasetCard
from simlidar.pipeline.cli.main import add_training_commands
from simlidar.pipeline.cli.main import cli as root
from simlidar.sensors import load_sensor

from .helpers import REPO, generate, scene_depth, write_photo


def _every_command() -> list[tuple[list[str], click.Command]]:
    add_training_commands()
    found = []

    def walk(command, path):
        found.append((path, command))
        for name, child in getattr(command, "commands", {}).items():
            walk(child, [*path, name])

    walk(root, [])
    return found


def test_every_commands_help_renders_without_doubled_defaults_or_percent_escapes(cli):
    commands = _every_command()
    assert len(commands) >= 30  # every group's commands, hidden aliases included
    for path, command in commands:
        code, text, err = cli(*path, "--help")
        assert code == 0 and "Usage: " in text, (path, err)
        assert "%%" not in text, path
        context = click.Context(command, info_name=path[-1] if path else "simlidar", show_default=True)
        for parameter in command.params:
            record = parameter.get_help_record(context) if isinstance(parameter, click.Option) else None
            if record is None:
                continue
            assert record[1].count("[default:") <= 1, (path, record)
            assert '[default: ""]' not in record[1], (path, record)


def test_the_benches_are_one_group_and_their_old_names_are_hidden_aliases(cli):
    code, text, _ = cli("--help")
    assert code == 0 and "bench-" not in text
    code, text, _ = cli("bench", "--help")
    for name in ("frame", "meshes", "edges", "scaling", "store", "teacher", "gpu", "train", "ssi", "student"):
        assert f"  {name} " in text, name
    code, text, _ = cli("bench-student", "--help")
    assert code == 0 and "DEPRECATED: use `simlidar bench student`" in text


def test_usage_errors_exit_2_with_suggestions(cli, photos, tmp_path):
    out = tmp_path / "out"
    code, _, err = cli("generate", "--images", photos, "--out", out, "--sensor", "hdl65")
    assert code == 2 and "unknown sensor 'hdl65' (did you mean hdl64 or hdl32?)" in err
    code, _, err = cli("generate", "--images", photos, "--out", out, "--teacher", "depth-anything-v2-smal")
    assert code == 2 and "(did you mean depth-anything-v2-small" in err
    code, _, err = cli("generate", "--images", photos, "--out", out, "--mount", "kiti")
    assert code == 2 and "unknown mount 'kiti' (did you mean kitti?)" in err
    code, _, err = cli("genrate", "--images", photos)
    assert code == 2 and "Did you mean 'generate'?" in err
    code, _, err = cli("sensors", "show", "os11")
    assert code == 2 and "(did you mean os1?)" in err
    code, _, err = cli("teachers", "pull", "zoedepth-kiti")
    assert code == 2 and "(did you mean zoedepth-kitti" in err
    # Values the config refuses before any work, and option strings that do not parse.
    code, _, err = cli("generate", "--images", photos, "--out", out, "--drop-rate", "3")
    assert code == 2 and err == "error: --drop-rate must be in [0, 1)\n"
    code, _, err = cli("generate", "--images", photos, "--out", out, "--calibration-error", "twist=1")
    assert code == 2 and "--calibration-error" in err and err.count("\n") == 1
    code, _, err = cli("inspect")
    assert code == 2 and "Missing option '--shards'" in err
    assert not out.exists()


def test_failures_of_the_data_or_the_run_exit_1(cli, photos, tmp_path):
    code, _, err = cli("generate", "--images", tmp_path / "nothing", "--out", tmp_path / "out")
    assert code == 1 and "--images" in err and "does not exist" in err and err.count("\n") == 1
    out = tmp_path / "out"
    assert generate(cli, photos, out)[0] == 0
    (out / "shard-000000.tar").write_bytes(b"damaged")
    code, _, err = cli("inspect", "--shards", out, "--previews", "0")
    assert code == 1 and "problems in" in err
    code, _, err = cli("publish", "--shards", out, "--repo", "me/x", "--dry-run")
    assert code == 1 and "error:" in err


def test_the_renamed_camera_flag_and_the_old_positional_output_still_work(cli, photos, tmp_path):
    code, _, err = generate(cli, photos, tmp_path / "new", "--camera", "3")
    assert code == 0, err
    code, _, err = generate(cli, photos, tmp_path / "old", "--mount-camera", "3")
    assert code == 0 and "warning: --mount-camera is deprecated: use --camera" in err
    configs = [json.loads((tmp_path / name / "manifest.json").read_text())["config"] for name in ("new", "old")]
    assert configs[0] == configs[1] and configs[0]["mount_camera"] == 3
    code, _, err = generate(cli, photos, tmp_path / "both", "--mount-camera", "3", "--camera", "1")
    assert code == 2 and "give --camera only" in err
    code, text, err = cli("inspect", tmp_path / "new", "--previews", "0")
    assert code == 0 and "points per sample" in text and "--shards" in err
    code, _, err = cli("inspect", tmp_path / "new", "--shards", tmp_path / "old")
    assert code == 2 and "give the output once" in err


def test_inspect_quiet_prints_only_problems(cli, photos, tmp_path):
    out = tmp_path / "out"
    assert generate(cli, photos, out)[0] == 0
    assert cli("inspect", "--shards", out, "--quiet") == (0, "", "")


def test_sensor_files_are_kept_unless_overwrite(cli, tmp_path):
    metadata = REPO.parent / "shared" / "data" / "ouster" / "OS-1-128_v2.3.0_1024x10.json"
    if not metadata.is_file():
        pytest.skip("the shared Ouster metadata is absent")
    out = tmp_path / "mine.toml"
    out.write_text("# my own notes\n")
    code, _, err = cli("sensors", "import", "ouster", metadata, "--out", out)
    assert code == 1 and "exists: pass --overwrite" in err and out.read_text() == "# my own notes\n"
    code, _, err = cli("sensors", "import", "ouster", metadata, "--out", out, "--overwrite")
    assert code == 0 and load_sensor(out).channels == 128


def test_benches_find_bundled_and_shared_data_from_any_folder(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMLIDAR_DATA", str(tmp_path / "no-shared-data"))
    code, _, err = cli("bench", "edges", "--repeats", "1")
    assert code == 1 and err.count("\n") == 1
    assert f"the shared KITTI object frames is not at {tmp_path / 'no-shared-data' / 'kitti_object'}" in err
    assert "pass --kitti-object DIR/NAME, or set SIMLIDAR_DATA" in err
    code, text, err = cli("bench", "frame", "--repeats", "1", "--sensor", "vlp16")
    assert code == 0, err
    assert {line.split()[0] for line in text.splitlines()[1:7]} == {"corridor.jpg", "street_kitti.jpg", "yard.jpg"}
    assert "(no KITTI frame:" in text


def test_the_manifest_card_and_summary_say_what_the_options_resolved_to(cli, tmp_path):
    photos = tmp_path / "photos"
    K = np.array([[100.0, 0.0, 79.5], [0.0, 100.0, 47.5], [0.0, 0.0, 1.0]])
    for index in range(3):  # two photos with intrinsics, one without
        write_photo(photos, f"img{index}.jpg", scene_depth(index), K if index else None, seed=index)
    out = tmp_path / "out"
    code, text, err = cli("generate", "--images", photos, "--out", out, "--workers", "1", "--views", "2")
    assert code == 0, err
    assert "depth from sidecar (all 6 samples)" in text
    assert "intrinsics from a random field of view (2 of 6 samples), the photo's .json (4 of 6 samples)" in text
    assert "mount kitti" in text and "note: 2 of 6 samples got a random field of view (--fov-range)" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["teacher"] == "auto" and manifest["config"]["mount"] == ""
    assert manifest["resolved"] == {
        "mount": "kitti",
        "teacher": {"sidecar": 6},
        "intrinsics": {"random": 2, "sidecar": 4},
    }

    code, _, err = cli("publish", "--shards", out, "--repo", "me/streets", "--dry-run")
    assert code == 0 and err.count("warning: no --license given") == 1
    card = DatasetCard.load(out / "hub" / "README.md", repo_type="dataset")
    assert card.data.license == "other" and "**Licence not set**" in card.text
    assert "`--teacher auto` resolved to `sidecar` (depth supplied beside each photo): 6 of 6 samples" in card.text
    assert "| mount | `kitti` (the sensor default), per-view jitter" in card.text
    assert "a random field of view (2 of 6 samples), the photo's .json (4 of 6 samples)" in card.text
    code, _, err = cli("publish", "--shards", out, "--repo", "me/streets", "--dry-run", "--license", "cc-by-4.0")
    assert code == 0 and "warning" not in err
    assert "Licence not set" not in (out / "hub" / "README.md").read_text()


def test_generate_says_when_ray_is_starting(cli, photos, tmp_path):
    from simlidar.pipeline import distributor

    said = []

    class Progress:
        def inputs_done(self, count):
            pass

        def shard_done(self):
            pass

        def starting(self, what):
            said.append(what)

    class Stop(Exception):
        pass

    def refuse(**_):
        raise Stop

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(distributor.ray, "is_initialized", lambda: False)
        patch.setattr(distributor.ray, "init", refuse)
        with pytest.raises(Stop):
            distributor.run_on_ray(None, [], None, Progress(), 2, None)
    assert said == ["starting Ray (a local cluster) ..."]
