"""The package as an index would show it: pyproject.toml's metadata complete and consistent
(licence and its file, authors, the project's URLs, classifiers, keywords, the extras CI
needs), and one version. The wheel itself is built, installed alone and run by
`scripts/check_wheel.py` (CI); the slow test here builds it and checks what it holds."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

import cam_cli

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import check_wheel  # noqa: E402

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_metadata_fields_an_index_shows_are_there():
    assert PROJECT["license"] == "MIT"
    assert all((REPO / name).is_file() for name in PROJECT["license-files"])
    assert "MIT License" in (REPO / "LICENSE").read_text()
    assert PROJECT["authors"]
    assert PROJECT["keywords"]
    assert PROJECT["readme"] == "README.md"
    assert PROJECT["requires-python"] == ">=3.11"
    assert PROJECT["dynamic"] == ["version"]
    assert cam_cli.__version__.count(".") == 2


def test_one_project_url_everywhere():
    urls = PROJECT["urls"]
    assert {"Homepage", "Documentation", "Repository", "Issues", "Changelog"} <= set(urls)
    assert all(url.startswith(check_wheel.PROJECT_URL) for url in urls.values())
    assert f"repo_url: {check_wheel.PROJECT_URL}" in (REPO / "mkdocs.yml").read_text()


def test_classifiers_say_the_platforms_and_pythons():
    classifiers = PROJECT["classifiers"]
    assert "Operating System :: POSIX :: Linux" in classifiers
    pythons = [c for c in classifiers if c.startswith("Programming Language :: Python :: 3.")]
    assert "Programming Language :: Python :: 3.11" in pythons  # requires-python's floor
    assert not any(c.startswith("License ::") for c in classifiers)  # PEP 639: the expression


def test_dev_installs_what_ci_runs():
    extras = PROJECT["optional-dependencies"]
    dev = " ".join(extras["dev"])
    own = [re.findall(r"\w+", name.split("[", 1)[1]) for name in extras["dev"] if "[" in name]
    assert any("docs" in names for names in own), extras["dev"]  # cam-cli[docs,...]
    assert "build" in dev
    assert "pytest" in dev
    assert "ruff" in dev
    assert any(name.startswith("mkdocs-material") for name in extras["docs"])
    assert any(name.startswith("mkdocstrings") for name in extras["docs"])


@pytest.mark.slow
def test_the_sdist_and_wheel_hold_what_they_need(tmp_path):
    sdist, wheel = check_wheel.build(tmp_path)
    check_wheel.check_sdist(sdist)
    check_wheel.check_metadata(check_wheel.check_wheel_files(wheel))
    assert wheel.name == f"cam_cli-{cam_cli.__version__}-py3-none-any.whl"
