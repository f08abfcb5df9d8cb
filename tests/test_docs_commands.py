"""The documentation's commands work as printed (README.md, CONTRIBUTING.md, docs/).

Every shell block is either run here, in one workspace where the names the blocks use are real
files (the shared ILSVRC sample and MobileNetV2 weights, a small synthetic data set and a
network trained on it), or says why it is not. The cheap checks hold for every block, run or
not: each names its language, each `cam-cli` call names a command and options that exist, each
`scripts/...` and `configs/...` path exists. The blocks are read with `scripts/docs/docs_blocks.py`;
their `cam-cli` is this checkout's, through a fork server (tests/cli_server.py) that pays
torch's start-up once for all of them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from cam_cli.cli.main import app
from cam_cli.cli.train import NOT_SETTINGS
from cam_cli.synthetic.dataset import generate_dataset
from cam_cli.training.config import resolve_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts" / "docs"))
import cli_server  # noqa: E402  (tests/ is on sys.path, as for conftest)
import docs_blocks as docs  # noqa: E402

SHARED = REPO.parent / "shared"
ZHOU_EXAMPLE = SHARED / "data" / "zhou2016-bboxgenerator" / "heatmap_6.jpg"
SAMPLE_IMAGES = 4  # photos/ and val/: the first images of the sample
DOG = "ILSVRC2012_val_00001872"  # dog.jpg: a Shetland sheepdog of the sample
README_LIMIT = 250
BLOCKS = docs.all_blocks()
SHELL_BLOCKS = [b for b in BLOCKS if b.lang in docs.SHELL]


def nav_order() -> list[Path]:
    """The pages in the site's order (mkdocs.yml's nav), after README.md: a block may use what
    an earlier page's block wrote (`boxes` the maps `cam` saved)."""
    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    pages: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str):
            pages.append(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config["nav"])
    return [REPO / "README.md", REPO / "CONTRIBUTING.md", *(REPO / "docs" / p for p in pages)]


def run_blocks() -> list[docs.Block]:
    order = {path: i for i, path in enumerate(nav_order())}
    chosen = [b for b in SHELL_BLOCKS if b.kind == "run"]
    return sorted(chosen, key=lambda b: (order.get(b.path, len(order)), str(b.path), b.line))


def click_commands() -> dict[str, Any]:
    """The commands as click sees them (typer's own copy of click: duck-typed here)."""
    group = typer.main.get_command(app)
    with group.context_class(group) as context:
        return {name: group.get_command(context, name) for name in group.list_commands(context)}


def option_names(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if param.param_type_name == "option":
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


# --- checks of every block ---------------------------------------------------------------------


def test_every_block_names_its_language():
    unnamed = [b.where for b in BLOCKS if not b.lang]
    assert not unnamed, f"code blocks without a language (use `text` for output): {unnamed}"


def test_every_shell_block_is_run_or_says_why_not():
    bad = [b.where for b in SHELL_BLOCKS if b.kind not in ("run", "not run")]
    assert not bad, (
        "shell blocks with neither `<!-- run -->` nor `<!-- not run: REASON -->` just before "
        f"them: {bad}"
    )
    no_reason = [b.where for b in SHELL_BLOCKS if b.kind == "not run" and len(b.note) < 10]
    assert not no_reason, f"`not run` without its reason: {no_reason}"
    odd = [b.where for b in SHELL_BLOCKS if b.kind == "run" and b.note not in ("", docs.COMPARE)]
    assert not odd, f"`run` says only nothing or {docs.COMPARE!r}: {odd}"


def test_markers_sit_just_before_blocks_of_their_kind():
    for path in docs.documentation_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if docs.MARKER.match(line.strip()):
                after = next((x for x in lines[i + 1 :] if x.strip()), "")
                assert docs.FENCE.match(after), f"{path.name}:{i + 1}: a marker with no block"
    for block in BLOCKS:
        if block.kind in ("run", "not run"):
            assert block.lang in docs.SHELL | {"python"}, f"{block.where}: marker on {block.lang}"
        if block.kind == "python":
            assert block.lang == "python", f"{block.where}: python marker on {block.lang}"


def test_python_blocks_are_run_by_the_test_they_name():
    for block in (b for b in BLOCKS if b.lang == "python"):
        assert block.kind in ("python", "not run"), f"{block.where}: say which test runs it"
        if block.kind == "python":
            test = re.search(r"tests/test_\w+\.py", block.note)
            assert test, f"{block.where}: {block.note}"
            assert (REPO / test.group()).is_file(), f"{block.where}: {block.note}"
            page = block.path.relative_to(REPO).as_posix()
            assert page in (REPO / test.group()).read_text(), f"{test.group()} reads {page}"


def test_cam_cli_options_of_every_shell_block_exist():
    commands = click_commands()
    global_options = option_names(typer.main.get_command(app))
    problems = []
    for block in SHELL_BLOCKS:
        for call in docs.cam_cli_calls(block.text):
            flags = [w.split("=")[0] for w in call if w.startswith("-") and w != "-"]
            positional = [w for w in call if not w.startswith("-")]
            if not positional:  # `cam-cli --version`, `cam-cli --help`
                problems += [
                    f"{block.where}: cam-cli {f}" for f in flags if f not in global_options
                ]
                continue
            command = commands.get(positional[0])
            if command is None:
                problems.append(f"{block.where}: no command `cam-cli {positional[0]}`")
                continue
            known = option_names(command)
            problems += [
                f"{block.where}: cam-cli {positional[0]} {f}" for f in flags if f not in known
            ]
    assert not problems, "options that do not exist:\n" + "\n".join(problems)


def test_scripts_and_configs_named_in_shell_blocks_exist():
    missing = [
        f"{block.where}: {path}"
        for block in SHELL_BLOCKS
        for path in docs.repo_paths(block.text)
        if not (REPO / path).exists()
    ]
    assert not missing, missing


def test_the_readme_opens_with_the_two_commands_ci_runs():
    first, second = [b for b in SHELL_BLOCKS if b.path.name == "README.md"][:2]
    assert first.text.strip() == (
        'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]" && bash scripts/demo.sh'
    )
    assert second.text.strip() == ".venv/bin/python -m pytest -q"
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert first.text.strip() in ci
    assert second.text.strip() in ci
    getting_started = [b for b in SHELL_BLOCKS if b.path.name == "getting-started.md"][:2]
    assert [b.text for b in getting_started] == [first.text, second.text]


def test_the_readme_is_short_and_its_links_resolve():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_LIMIT
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link.split("#")[0] for link in links if "://" not in link]
    assert local, local
    assert all((REPO / link).exists() for link in local), local


def test_the_wheel_demo_trains_what_the_demo_trains():
    """getting-started's demo from a wheel needs no file of the source tree: its `train`
    resolves to the settings of configs/small-cpu.toml, the recipe scripts/demo.sh trains."""
    (block,) = [b for b in SHELL_BLOCKS if "wheel-demo" in b.note]
    (call,) = [c for c in docs.cam_cli_calls(block.text) if c[0] == "train"]
    command = click_commands()["train"]
    with command.make_context("train", call[1:], resilient_parsing=True) as context:
        overrides = {k: v for k, v in context.params.items() if k not in NOT_SETTINGS}
    from_flags = resolve_config(overrides=overrides).config
    from_file = resolve_config(config_file=REPO / "configs" / "small-cpu.toml").config
    assert from_flags == from_file
    assert "configs/small-cpu.toml" in (REPO / "scripts" / "demo.sh").read_text()
    assert "wheel-demo" in (REPO / "scripts" / "check_wheel.py").read_text()


# --- the blocks that run -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, sample_dir, mobilenet_weights) -> Iterator[dict[str, Any]]:
    """A folder where every name the run blocks use is real, and the environment they run in
    (`cam-cli` and `python` on PATH are this checkout's)."""
    if not ZHOU_EXAMPLE.is_file():
        pytest.skip(f"{ZHOU_EXAMPLE} not present")
    root = tmp_path_factory.mktemp("docs")
    (root / "mobilenet_v2-imagenet.pth").symlink_to(mobilenet_weights)
    (root / "LOC_synset_mapping.txt").symlink_to(sample_dir / "LOC_synset_mapping.txt")
    (root / "configs").symlink_to(REPO / "configs")
    (root / "heatmap_6.jpg").symlink_to(ZHOU_EXAMPLE)
    images = sorted((sample_dir / "val").glob("*.JPEG"))[:SAMPLE_IMAGES]
    for folder in ("photos", "val", "annotations"):
        (root / folder).mkdir()
    for image in images:
        (root / "photos" / f"{image.stem}.jpg").symlink_to(image)
        shutil.copyfile(image, root / "val" / image.name)  # a copy: ids are paths under ./
        xml = f"{image.stem}.xml"
        (root / "annotations" / xml).symlink_to(sample_dir / "annotations" / xml)
    (root / "dog.jpg").symlink_to(sample_dir / "val" / f"{DOG}.JPEG")
    stems = {image.stem for image in images}
    rows = (sample_dir / "LOC_val_solution.csv").read_text().splitlines()
    kept = [rows[0], *(row for row in rows[1:] if row.split(",")[0] in stems)]
    (root / "LOC_val_solution.csv").write_text("\n".join(kept) + "\n")

    generate_dataset(root / "data", num_classes=3, train_per_class=12, val_images=6)
    server = cli_server.Server(root / ".bin", REPO)  # `cam-cli` without torch's start-up
    python = root / ".bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{server.bin}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
    }
    try:
        # runs/x: a network trained on data/, for the blocks that take runs/x/best.pt
        subprocess.run(
            ["cam-cli", "train", "--arch", "small-gap", "--data", "data", "--out", "runs/x",
             "--epochs", "1", "--workers", "0", "--device", "cpu", "-q"],
            cwd=root, env=env, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        yield {"root": root, "env": env}
    finally:
        server.close()


@pytest.mark.slow
@pytest.mark.parametrize("block", run_blocks(), ids=lambda b: b.where)
def test_shell_block_runs_as_printed(block: docs.Block, workspace):
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text],
        cwd=workspace["root"], env=workspace["env"], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, f"{block.where} exited {result.returncode}:\n{result.stderr}"
    if block.note == docs.COMPARE:
        shown = docs.next_block(block)
        assert shown is not None, f"{block.where}: no text block after"
        assert shown.lang == "text", f"{block.where}: no text block after"
        assert result.stdout.strip() == shown.text.strip(), f"{block.where}: output differs"
