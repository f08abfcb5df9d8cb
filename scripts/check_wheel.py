"""The wheel works on its own: build the sdist and, from it, the wheel; check what each holds
and the metadata an index would show; install the wheel into a fresh virtual environment and
run its `cam-cli`: `--version`, `models`, and the demo of docs/getting-started.md (the block
marked "wheel-demo"), from a folder outside the source tree.

    .venv/bin/python scripts/check_wheel.py              # what .ci/run runs (about 2 minutes)
    .venv/bin/python scripts/check_wheel.py --quick      # no demo
    .venv/bin/python scripts/check_wheel.py --dist dist  # keep the sdist and the wheel

The dependencies (PyTorch: gigabytes) are not installed again: the fresh environment gets the
wheel alone (``pip install --no-deps``) and a ``.pth`` file naming this interpreter's
site-packages for the rest. That folder is added to ``sys.path`` but is not a site directory,
so the editable install it may hold (its own ``.pth`` hook) is never active there: the check
asserts that `cam_cli` is imported from the fresh environment, i.e. that the wheel's own files
are what runs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts" / "docs"))  # the documentation's code blocks

from docs_blocks import SHELL, all_blocks  # noqa: E402

PROJECT_URL = "https://github.com/cam-cli/cam-cli"
# What a user of the sdist needs besides the package: the demo, the recipes, the tests and the
# documentation, so the source tree can be rebuilt, checked and run from it.
SDIST_NEEDS = (
    "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "CONTRIBUTING.md", "mkdocs.yml",
    "scripts/demo.sh", "configs/small-cpu.toml", "tests/conftest.py", "docs/index.md",
    "docs/hooks.py", "cam_cli/py.typed",
)  # fmt: skip
METADATA_FIELDS = ("Name", "Version", "Summary", "License-Expression", "License-File",
                   "Author", "Requires-Python", "Keywords", "Description-Content-Type")  # fmt: skip


def fail(message: str) -> None:
    sys.exit(f"check_wheel: FAIL: {message}")


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(command), file=sys.stderr, flush=True)
    result = subprocess.run(command, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        fail(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def build(dist: Path) -> tuple[Path, Path]:
    """The sdist, then the wheel built from the unpacked sdist (python -m build's default), so
    a file the wheel needs and the sdist lacks fails here."""
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(REPO)])
    (sdist,) = dist.glob("cam_cli-*.tar.gz")
    (wheel,) = dist.glob("cam_cli-*.whl")
    return sdist, wheel


def check_sdist(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = [name for name in SDIST_NEEDS if name not in names]
    if missing:
        fail(f"{sdist.name} lacks {missing}")
    stray = [name for name in names if "__pycache__" in name or name.startswith(("runs/", "site/"))]
    if stray:
        fail(f"{sdist.name} holds build or run leftovers: {stray[:5]}")


def check_wheel_files(wheel: Path) -> str:
    """What the wheel holds: the package and its licence, nothing else; returns its METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(info).decode("utf-8")
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    tops = {name.split("/")[0] for name in names}
    if {t for t in tops if not t.endswith(".dist-info")} != {"cam_cli"}:
        fail(f"{wheel.name} holds more than the package: {sorted(tops)}")
    for needed in ("cam_cli/py.typed", "cam_cli/cli/main.py"):
        if needed not in names:
            fail(f"{wheel.name} lacks {needed}")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        fail(f"{wheel.name} lacks its LICENSE")
    if "cam-cli = cam_cli.cli.main:main" not in entry_points:
        fail(f"{wheel.name}: no cam-cli console script")
    return metadata


def check_metadata(text: str) -> None:
    """The fields an index shows, present and valid (packaging's own validation: what twine
    check and PyPI read)."""
    from packaging.metadata import Metadata

    Metadata.from_email(text, validate=True)
    fields = Parser().parsestr(text)
    missing = [name for name in METADATA_FIELDS if not fields.get(name)]
    if missing:
        fail(f"METADATA lacks {missing}")
    if fields["License-Expression"] != "MIT":
        fail(f"License-Expression is {fields['License-Expression']!r}")
    urls = fields.get_all("Project-URL") or []
    if len(urls) < 4 or not all(PROJECT_URL in url for url in urls):
        fail(f"Project-URL: {urls}")
    classifiers = fields.get_all("Classifier") or []
    for prefix in ("Operating System ::", "Programming Language :: Python :: 3.", "Topic ::"):
        if not any(c.startswith(prefix) for c in classifiers):
            fail(f"no classifier {prefix}...")
    if not fields.get_payload().startswith("# cam-cli"):
        fail("the long description is not the README")


def fresh_environment(root: Path, wheel: Path) -> Path:
    """A virtual environment holding the wheel alone, with this interpreter's packages
    reachable for the dependencies; its python."""
    run([sys.executable, "-m", "venv", "--without-pip", str(root)])
    python = root / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--quiet", str(wheel)])  # fmt: skip
    purelib = Path(
        run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).stdout.strip()
    )
    here = sysconfig.get_paths()
    (purelib / "_check_wheel_dependencies.pth").write_text(
        "\n".join(dict.fromkeys([here["purelib"], here["platlib"]])) + "\n"
    )
    return python


def demo_block() -> str:
    blocks = [b for b in all_blocks() if b.lang in SHELL and "wheel-demo" in b.note]
    if len(blocks) != 1:
        fail(f"docs should hold one block marked wheel-demo, not {len(blocks)}")
    return blocks[0].text


def check_installed(env: Path, python: Path, demo: bool, work: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environ["PATH"] = f"{env / 'bin'}{os.pathsep}{environ.get('PATH', '')}"
    where = run([str(python), "-c", "import cam_cli; print(cam_cli.__file__)"], cwd=work,
                env=environ).stdout.strip()  # fmt: skip
    if not Path(where).resolve().is_relative_to(env.resolve()):
        fail(f"cam_cli came from {where}, not from the wheel in {env}")
    version = run(["cam-cli", "--version"], cwd=work, env=environ).stdout
    if not re.fullmatch(r"cam-cli \d+\.\d+\.\d+\n", version):
        fail(f"cam-cli --version printed {version!r}")
    models = run(["cam-cli", "models"], cwd=work, env=environ).stdout
    if not models.startswith("name ") or "small-gap" not in models:
        fail(f"cam-cli models printed {models[:200]!r}")
    print(f"check_wheel: {version.strip()} from {where}", file=sys.stderr)
    if not demo:
        return
    result = run(["bash", "-euo", "pipefail", "-c", demo_block()], cwd=work, env=environ)
    table = result.stdout
    found = re.search(r"^localization error\s+([\d.]+)", table, flags=re.M)
    baselines = [float(v) for v in re.findall(r"^  baseline: [^\n]*?([\d.]+)\s+[\d.]+$", table,
                                              flags=re.M)]  # fmt: skip
    if not found or not baselines:
        fail(f"the demo printed no table:\n{table}\n{result.stderr[-2000:]}")
    error = float(found.group(1))
    # the demo's own bound (scripts/demo.sh): far better than both trivial baselines
    if not error < 0.5 * min(baselines):
        fail(f"the demo's top-1 localization error {error} is not below half of {baselines}")
    print(table, end="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Skip the demo.")
    parser.add_argument("--dist", type=Path, help="Keep the sdist and the wheel here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cam-cli-wheel-") as tmp:
        temp = Path(tmp)
        dist = args.dist or temp / "dist"
        dist.mkdir(parents=True, exist_ok=True)
        sdist, wheel = build(dist)
        check_sdist(sdist)
        check_metadata(check_wheel_files(wheel))
        env = temp / "venv"
        python = fresh_environment(env, wheel)
        work = temp / "work"
        work.mkdir()
        check_installed(env, python, not args.quick, work)
    print(f"check_wheel: OK ({sdist.name}, {wheel.name})", file=sys.stderr)


if __name__ == "__main__":
    main()
