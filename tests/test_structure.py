"""The rules of the code's shape (CONTRIBUTING.md), checked on the source itself with `ast`
and `tokenize` (nothing imported, no torch): no cycle between the subpackages, no private name
imported across modules, no long signature outside the CLI, no CLI flag spoken by the library.

The imports are read by docs/hooks.py, the same reading that generates the architecture page,
so the page and this check cannot disagree."""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "cam_cli"
sys.path.insert(0, str(REPO / "docs"))
import hooks  # noqa: E402

MAX_PARAMETERS = 8

# Flags inside what a run WRITES (not what it says): outputs stay byte-identical, and no CLI
# layer rewrites them, so these keep the flag. Each (file, flag) with where the text goes.
FLAGS_IN_OUTPUTS = {
    ("cam_cli/outputs/runs.py", "--draw"): "a `bbox` record's error (stdout JSONL, CSV, COCO)",
    ("cam_cli/training/checkpoints.py", "--config"): "the header line of a run's config.toml",
    ("cam_cli/outputs/datasets.py", "--format"): "a YOLO data.yaml's comment, a COCO file's info",
}

# A `--flag` of cam-cli as a user types it. CSS custom properties (the HTML report's stylesheet:
# `--ink:` declares one, `var(--ink)` reads it) are not flags, nor other tools' flags with an
# underscore (torchrun's `--nproc_per_node`, wsolevaluation's `--mask_root`).
FLAG = re.compile(r"(?<![\w-])(?<!var\()--[a-z][a-z0-9-]*(?![\w:-])")


def _sources(*, outside_cli: bool = False) -> list[Path]:
    paths = sorted(PACKAGE.rglob("*.py"))
    if outside_cli:
        paths = [p for p in paths if p.relative_to(PACKAGE).parts[0] != "cli"]
    return paths


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _where(path: Path, node: ast.AST | int) -> str:
    line = node if isinstance(node, int) else getattr(node, "lineno", 0)
    name = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name
    return f"{name}:{line}"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_cycle_between_subpackages_function_local_imports_included():
    modules = hooks.read_modules(REPO)
    graph: dict[str, set[str]] = {}
    edges: list[str] = []
    for module in modules.values():
        if module.name == hooks.PACKAGE:
            continue
        mine = hooks.group_of(module.name.removeprefix(hooks.PACKAGE + "."))
        graph.setdefault(mine, set())
        for target in module.imports:
            theirs = hooks.group_of(target.removeprefix(hooks.PACKAGE + "."))
            if theirs != mine:
                graph[mine].add(theirs)
                edges.append(f"{module.name} -> {target}")
    found = hooks.cycles(graph)
    detail = [
        edge
        for edge in edges
        if any({side.split(".")[1] for side in edge.split(" -> ")} <= set(c) for c in found)
    ]
    assert found == [], f"cycles between subpackages {found}, through: {detail}"
    assert hooks.cycles({m.name: m.imports for m in modules.values()}) == []


def test_the_reading_sees_type_checking_and_function_local_imports(tmp_path):
    package = tmp_path / "cam_cli"
    (package / "a").mkdir(parents=True)
    (package / "b").mkdir()
    for path in (package, package / "a", package / "b"):
        (path / "__init__.py").write_text('"""P."""\n')
    (package / "a" / "x.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cam_cli.b.y import g\n"
    )
    (package / "b" / "y.py").write_text("def g():\n    from cam_cli.a import x\n")
    modules = hooks.read_modules(tmp_path)
    assert modules["cam_cli.a.x"].imports == {"cam_cli.b.y"}
    assert modules["cam_cli.b.y"].imports == {"cam_cli.a.x"}


def _private_imports(path: Path, tree: ast.Module) -> list[str]:
    """``from m import _x``, ``import m._x``, and ``m._x`` on a name bound by an import."""
    found = []
    modules: set[str] = set()  # local names bound by an import
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            dotted = [*(node.module or "").split("."), *(a.name for a in node.names)]
            found += [f"{_where(path, node)} imports {n}" for n in dotted if _is_private(n)]
            modules |= {a.asname or a.name for a in node.names}  # a module, or a thing of one
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                found += [f"{_where(path, node)} imports {n}" for n in parts if _is_private(n)]
                modules.add(alias.asname or parts[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _is_private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            found.append(f"{_where(path, node)} reads {node.value.id}.{node.attr}")
    return found


def test_no_private_name_imported_across_modules():
    found = [hit for path in _sources() for hit in _private_imports(path, _tree(path))]
    assert found == []


def test_the_private_import_check_catches_each_form(tmp_path):
    source = (
        "import torch._C\nfrom cam_cli.boxes import _kernels\nfrom cam_cli.x import _y, z\n"
        "from cam_cli import settings\nsettings._private\n"
    )
    found = _private_imports(tmp_path / "m.py", ast.parse(source))
    assert [hit.split(" ", 1)[1] for hit in found] == [
        "imports _C", "imports _kernels", "imports _y", "reads settings._private",
    ]  # fmt: skip


# A Triton kernel (`@triton.jit`) and a torch custom operator (`@torch.library.custom_op`)
# take their tensors, sizes and compile-time constants one argument each: their compilers read
# the signature and accept no dataclass, so the bound cannot apply to them.
KERNEL_DECORATORS = {"triton.jit", "torch.library.custom_op"}


def _is_kernel(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if ast.unparse(target) in KERNEL_DECORATORS:
            return True
    return False


def parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Every parameter but ``self``/``cls``; ``*args`` and ``**kwargs`` one each."""
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    if names and names[0] in {"self", "cls"}:
        names = names[1:]
    return len(names) + (args.vararg is not None) + (args.kwarg is not None)


def test_no_function_outside_the_cli_takes_more_than_eight_parameters():
    long = [
        f"{_where(path, node)} {node.name}: {parameter_count(node)}"
        for path in _sources(outside_cli=True)
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and parameter_count(node) > MAX_PARAMETERS
        and not _is_kernel(node)
    ]
    assert long == [], "group them in an options dataclass (settings.py, eval_options.py)"


def test_parameters_are_counted_without_self():
    node = ast.parse("def f(self, a, /, b, *c, d, **e): pass").body[0]
    assert isinstance(node, ast.FunctionDef)
    assert parameter_count(node) == 5


def _flags(path: Path) -> list[str]:
    """Every `--flag` in a string (docstrings and messages) or a comment of the file."""
    text = path.read_text(encoding="utf-8")
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [f"{_where(path, node)} {f}" for f in FLAG.findall(node.value)]
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            found += [f"{_where(path, token.start[0])} {f}" for f in FLAG.findall(token.string)]
    return found


def test_the_library_names_its_arguments_never_cli_flags():
    """The library names its own arguments in backticks; `cli/options.py` (`FLAGS`,
    `as_flags`) turns them into the flags the user typed."""
    found = [hit for path in _sources(outside_cli=True) for hit in _flags(path)]
    left = [hit for hit in found if (hit.split(":")[0], hit.split()[-1]) not in FLAGS_IN_OUTPUTS]
    assert left == [], "name the argument in backticks: `per_image`, not --per-image"


@pytest.mark.parametrize(
    ("text", "flags"),
    [
        ("pass --per-image or --json", ["--per-image", "--json"]),
        ("`per_image`: not a file; a--b x-- ", []),
        (":root { --ink: #222; --ink-2: #333; } a { color: var(--ink); }", []),
        ("torchrun --nproc_per_node=2", []),
    ],
)
def test_the_flag_pattern(text, flags):
    assert FLAG.findall(text) == flags
