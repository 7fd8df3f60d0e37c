"""The layout rules of ../shared/DESIGN.md, checked on the source: what pipeline/ holds at
its top level, who may import train, and how long a function in pipeline/ or train/ may be."""

import ast
import re
from pathlib import Path

PIPELINE = Path(__file__).resolve().parent.parent / "pipeline"
TRAIN = PIPELINE.parent / "train"
JOB_MODULES = {"__init__", "schema", "config", "worker", "runner", "writer", "distributor", "errors"}
MAX_FUNCTION_LINES = 60


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _is_click_command(node: ast.AST) -> bool:
    """A function whose decorators are click options (its length is its option stack)."""
    return any(
        isinstance(decorator, ast.Call) and ast.unparse(decorator.func).split(".")[-1] in ("option", "argument")
        for decorator in getattr(node, "decorator_list", [])
    )


def test_only_the_jobs_own_modules_sit_at_the_top_of_pipeline():
    top = {path.stem for path in PIPELINE.glob("*.py")}
    assert top == JOB_MODULES
    assert {path.name for path in PIPELINE.iterdir() if path.is_dir() and path.name != "__pycache__"} == {
        "sources",
        "stages",
        "output",
        "bench",
        "cli",
    }


def _imports(path: Path, module_level_only: bool) -> list[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    names = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append("." * node.level + node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_pipeline_imports_train_only_from_its_cli_and_only_lazily():
    for path in _modules(PIPELINE):
        inside_cli = path.parent.name == "cli"
        for name in _imports(path, module_level_only=inside_cli):
            assert "simlidar.train" not in name, f"{path.relative_to(PIPELINE)} imports {name}"


# The departures from DESIGN.md's import table: a training run holds its folder with
# generate's lock (one writer, the holder named, a stale lock taken over), not a copy of it;
# its previews are drawn with every picture's one look (one depth colormap), not a second one.
RUN_FOLDER_LOCK = "from simlidar.pipeline.output.lock import OutputLock"
PICTURES = "from simlidar.pipeline.output import pictures"


def test_train_imports_only_the_schema_the_run_folder_lock_and_the_pictures_from_pipeline():
    lock_users, picture_users = [], []
    for path in _modules(TRAIN):
        for name in _imports(path, module_level_only=False):
            allowed = ("simlidar.pipeline", "simlidar.pipeline.output.lock", "simlidar.pipeline.output")
            assert "simlidar.pipeline" not in name or name in allowed, f"{path.name}: {name}"
            if name == "simlidar.pipeline":
                assert "from simlidar.pipeline import schema" in path.read_text()
            if name == "simlidar.pipeline.output.lock":
                assert RUN_FOLDER_LOCK in path.read_text().splitlines()
                lock_users.append(path.name)
            if name == "simlidar.pipeline.output":
                assert PICTURES in path.read_text().splitlines()
                picture_users.append(path.name)
    assert lock_users == ["run.py"] and picture_users == ["validate.py"]


def test_no_function_in_pipeline_or_train_is_longer_than_sixty_lines_except_click_commands():
    too_long = []
    for path in _modules(PIPELINE) + _modules(TRAIN):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not _is_click_command(node):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(PIPELINE.parent)}:{node.lineno} {node.name} ({length} lines)")
    assert not too_long, too_long


def test_the_worker_stays_small():
    assert len((PIPELINE / "worker.py").read_text().splitlines()) <= 150


def test_the_cli_shows_library_parameters_as_flags():
    from simlidar.pipeline.cli.errors import with_flags

    message = "`intrinsics_policy` fov needs `fov_deg` DEG; `unknown_name` stays"
    assert with_flags(message) == "--intrinsics-policy fov needs --fov DEG; unknown_name stays"


def _names_used(path: Path) -> set[str]:
    """Every name and attribute a module's code uses."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add(node.name.split(".")[-1])
    return names


def test_only_the_store_knows_whether_an_output_is_remote():
    """One store object per location: output/store.py picks it; the object store's local copy
    (mirror.py) is its only other user. Input readers (sources/) tell paths from URLs themselves."""
    allowed = {"output/store.py", "output/mirror.py"}
    for path in _modules(PIPELINE):
        where = path.relative_to(PIPELINE).as_posix()
        used = _names_used(path) & {"is_remote", "object_store", "ObjectStore", "UPath", "is_url"}
        if where.startswith("sources/"):
            used -= {"is_url"}
        assert where in allowed or not used, f"{where} uses {sorted(used)}"


KIND_CLASSES = {
    "Photos", "VirtualRig", "CalibratedRig", "KittiDepth", "RigLidar",
    "SourceItem", "RemoteItem", "ShardSample", "RigFrame", "KittiFrame",
    "PhotoReading", "FrameReading", "KittiReading", "SweepReading",
}  # fmt: skip
# The input's kind shows in these attributes; a test of them picks a kind.
KIND_ATTRIBUTES = {"rig", "calibration", "kind", "unit"}


def _kind_branches(path: Path) -> list[str]:
    """isinstance on a kind (or its items and readings) and ifs on attributes that name the kind."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "isinstance":
            named = {name.id for name in ast.walk(node.args[1]) if isinstance(name, ast.Name)}
            found += [f"{node.lineno}: isinstance on {name}" for name in named & KIND_CLASSES]
        if isinstance(node, ast.If | ast.IfExp | ast.While):
            tested = {attribute.attr for attribute in ast.walk(node.test) if isinstance(attribute, ast.Attribute)}
            found += [f"{node.lineno}: if on .{name}" for name in tested & KIND_ATTRIBUTES]
    return found


def test_the_kind_of_input_is_chosen_in_one_place_and_branched_on_nowhere_else():
    """sources/kinds.py holds every kind's implementation and generate_kind, the one place that
    picks one; the readers of photos (a folder, a URL, WebDataset shards) tell their forms apart
    in sources/inputs.py. Nothing else asks what kind of input it serves."""
    pickers = {"is_calibration", "is_shard_source", "generate_kind"}
    allowed = {
        "sources/kinds.py": pickers,
        "sources/inputs.py": {"is_shard_source"},
        "sources/calibrated_rig.py": {"is_calibration", "is_shard_source"},
        "sources/image_shards.py": {"is_shard_source"},
        "config.py": {"generate_kind"},
    }
    for path in _modules(PIPELINE):
        where = path.relative_to(PIPELINE).as_posix()
        used = (_names_used(path) & pickers) - allowed.get(where, set())
        assert not used, f"{where} uses {sorted(used)}"
        if where != "sources/kinds.py":
            assert not _kind_branches(path), f"{where}: {_kind_branches(path)}"


def _option_defaults(path: Path) -> dict[str, str]:
    """Each click option of a CLI module: its parameter name -> the source of its default."""
    found = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("option"):
            names = [arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
            plain = [name for name in names if not name.startswith("-")]
            name = plain[0] if plain else max(names, key=len).lstrip("-").replace("-", "_")
            found.update((name, ast.unparse(kw.value)) for kw in node.keywords if kw.arg == "default")
    return found


def test_the_cli_takes_every_default_from_the_config():
    """A default is written once, in the config a command builds; the CLI reads it from there."""
    from dataclasses import fields

    from simlidar.pipeline.config import ConvertKittiConfig, ConvertRigConfig, GenerateConfig

    for module, configs in (("generate.py", (GenerateConfig,)), ("convert.py", (ConvertKittiConfig, ConvertRigConfig))):
        names = {field.name for config in configs for field in fields(config)}
        defaults = _option_defaults(PIPELINE / "cli" / module)
        literal = {name: source for name, source in defaults.items() if name in names and "DEFAULTS[" not in source}
        assert not literal, f"cli/{module} repeats the config's defaults: {literal}"
        assert len(set(defaults) & names) >= (40 if module == "generate.py" else 8)


def _strings_naming_flags(path: Path) -> list[tuple[int, str]]:
    """(line, text) of the strings of a module that name a flag (--word), but docstrings and
    the reasons of BadImage (an input's, recorded in errors.jsonl as it is)."""
    tree = ast.parse(path.read_text())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None and "BadImage" in ast.unparse(node.exc):
            skipped |= {id(each) for each in ast.walk(node.exc)}
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skipped.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped
        if re.search(r"(^|[\s(])--[a-z]", node.value)
    ]


def test_library_errors_name_parameters_and_only_the_cli_names_flags():
    """Outside cli/ (and bench/, whose commands raise click's own errors) messages quote the
    parameter (`shard_size`); the CLI writes each as the flag that sets it (--shard-size)."""
    for path in _modules(PIPELINE):
        where = path.relative_to(PIPELINE).as_posix()
        if not where.startswith(("cli/", "bench/")):
            assert not _strings_naming_flags(path), f"{where} names flags: {_strings_naming_flags(path)}"


def test_every_quoted_parameter_has_one_flag_across_commands():
    import click
    from simlidar.pipeline.cli.errors import _commands, flag_names, with_flags
    from simlidar.pipeline.cli.main import add_training_commands, cli

    add_training_commands()
    seen: dict[str, set[str]] = {}
    for command in _commands(cli):
        for parameter in command.params:
            if isinstance(parameter, click.Option):
                seen.setdefault(parameter.name, set()).add(max(parameter.opts, key=len))
    # The parameters library messages quote (in backticks) must each stand for one flag.
    quoted = {
        name
        for folder in (PIPELINE, PIPELINE.parent / "sensors", PIPELINE.parent / "teachers")
        for path in _modules(folder)
        if "cli" not in path.parts
        for name in re.findall(r"`(\w+)`", path.read_text())
    }
    assert {name: flags for name, flags in seen.items() if len(flags) > 1 and name in quoted} == {}
    assert {"shard_size", "views", "rig", "lidar_folder", "out"} <= quoted
    flags = flag_names()
    assert flags["shard_size"] == "--shard-size" and flags["teacher_batch_size"] == "--batch-size"
    assert flags["lidar_columns"] == "--lidar-columns" and flags["occlusion_fill_px"] == "--occlusion-fill"
    assert with_flags("`rig` makes one scan: keep `views` 1") == "--rig makes one scan: keep --views 1"
