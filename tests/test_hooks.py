"""docs/hooks.py: the pages generated from the code (the architecture, the scripts, each
command's --help), and the site built strictly with them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "docs"))
import hooks  # noqa: E402


def test_cycles_are_the_strongly_connected_groups():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert hooks.cycles(graph) == [["a", "b", "c"], ["d", "e"]]
    assert hooks.cycles({"a": {"b"}, "b": set()}) == []


def test_layers_put_each_part_after_what_it_imports():
    graph = {"cli": {"api", "data"}, "api": {"data", "boxes"}, "data": {"boxes"},
             "boxes": {"data"}, "errors": set()}  # fmt: skip
    order = hooks.layered(graph)
    assert order == ["boxes", "data", "errors", "api", "cli"]  # the cycle kept together


def test_imports_are_read_from_the_source_function_local_ones_too(tmp_path):
    package = tmp_path / "cam_cli"
    (package / "low").mkdir(parents=True)
    (package / "high").mkdir()
    (package / "__init__.py").write_text('"""The package."""\n')
    (package / "low" / "__init__.py").write_text('"""Low."""\n')
    (package / "high" / "__init__.py").write_text('"""High."""\n')
    (package / "low" / "leaf.py").write_text(
        '"""A leaf.\n\nMore."""\n\ndef f():\n    from cam_cli.high.top import g\n'
    )
    (package / "high" / "top.py").write_text(
        '"""Top | piped."""\nfrom cam_cli.low.leaf import f\nfrom . import other\n'
    )
    (package / "high" / "other.py").write_text('"""Other."""\n')
    modules = hooks.read_modules(tmp_path)
    assert modules["cam_cli.low.leaf"].imports == {"cam_cli.high.top"}
    assert modules["cam_cli.high.top"].imports == {"cam_cli.low.leaf", "cam_cli.high.other"}
    text = hooks.architecture_markdown(tmp_path)
    assert "- subpackages: `high`, `low`" in text
    assert "`high.top` imports `low.leaf`" in text
    assert "`low.leaf` imports `high.top`" in text
    assert "| `leaf.py` | A leaf. |" in text
    assert "| `top.py` | Top \\| piped. |" in text


def test_the_real_package_map_names_every_module():
    text = hooks.architecture_markdown()
    for path in (REPO / "cam_cli").rglob("*.py"):
        if path.name != "__init__.py" and path.parent != REPO / "cam_cli":
            assert f"| `{path.name}` |" in text, path


def test_generated_help_is_the_commands_own():
    text = hooks.on_page_markdown("a\n<!-- generated: help synth -->\nb\n", page=None)
    assert "Usage: cam-cli synth [OPTIONS]" in text
    assert "--masks" in text
    assert text.startswith("a\n```text\n")
    assert text.endswith("```\nb\n")
    with pytest.raises(ValueError, match="no command"):
        hooks.help_text("nonesuch")


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (the docs extra)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "architecture" / "index.html").is_file()
