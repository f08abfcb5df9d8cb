"""mkdocs hooks (mkdocs.yml: `hooks`): parts of pages generated from the code at build time,
so they cannot drift from it. A page asks for one with a line of its own:

- `<!-- generated: architecture -->`: the package map: each subpackage's docstring, its modules
  with the first paragraph of theirs, what each part imports from the others (function-local
  imports included), and the import cycles there are between subpackages and between modules,
  read from the source with `ast` (nothing imported);
- `<!-- generated: scripts -->`: every script under `scripts/` with the first paragraph of its
  docstring (or, for a shell script, of its opening comment);
- `<!-- generated: help COMMAND -->`: `cam-cli COMMAND --help` as the command line prints it
  (``COMMAND`` left out: `cam-cli --help`).
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "cam_cli"
GENERATED = re.compile(r"^<!-- generated: (architecture|scripts|help(?: ([a-z-]+))?) -->$", re.M)
HELP_WIDTH = 100


@dataclass
class Module:
    name: str  # dotted: cam_cli.boxes.rules
    path: Path
    docstring: str
    imports: set[str] = field(default_factory=set)  # dotted names of cam_cli modules


def _resolve(name: str, modules: set[str]) -> str | None:
    """The cam_cli module an import names: the name itself, or its longest module prefix
    (``from cam_cli.boxes.rules import paper_box`` names a function of a module)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def read_modules(root: Path = ROOT) -> dict[str, Module]:
    """Every module of the package with its docstring and the package modules it imports
    (anywhere in the file: a function-local import is an import too)."""
    found: dict[str, Module] = {}
    trees: dict[str, ast.Module] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        trees[name] = tree
        found[name] = Module(name, path, ast.get_docstring(tree) or "")
    names = set(found)
    for name, tree in trees.items():
        is_package = found[name].path.name == "__init__.py"
        base = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    stem = ".".join([*anchor, *([node.module] if node.module else [])])
                else:
                    stem = node.module or ""
                targets = [f"{stem}.{alias.name}" for alias in node.names] + [stem]
            for target in targets:
                if target == PACKAGE or not target.startswith(PACKAGE + "."):
                    continue
                hit = _resolve(target, names)
                if hit and hit != name and hit != PACKAGE:
                    found[name].imports.add(hit)
                    break
    return found


def group_of(module: str) -> str:
    """The subpackage a module below the package belongs to (``boxes.rules`` -> ``boxes``),
    or the module's own name for the top-level modules (``settings``, ``api``)."""
    return module.split(".")[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(out)


def layered(graph: dict[str, set[str]]) -> list[str]:
    """The nodes, each after everything it imports (the members of a cycle together, in name
    order, after everything the cycle imports), ties in name order."""
    component = {node: (node,) for node in graph}
    for group in cycles(graph):
        for node in group:
            component[node] = tuple(group)
    needs = {c: set() for c in component.values()}
    for node, targets in graph.items():
        needs[component[node]] |= {component[t] for t in targets} - {component[node]}
    done: list[str] = []
    placed: set[tuple[str, ...]] = set()
    while len(placed) < len(needs):
        ready = sorted(c for c in needs if c not in placed and needs[c] <= placed)
        for group in ready:
            done.extend(group)
            placed.add(group)
    return done


def _cell(text: str) -> str:
    """Text for a Markdown table cell (a ``|`` in it would end the cell)."""
    return text.replace("|", "\\|") or "-"


def _first_paragraph(text: str) -> str:
    return " ".join(text.strip().split("\n\n", 1)[0].split())


def architecture_markdown(root: Path = ROOT) -> str:
    modules = read_modules(root)
    groups: dict[str, list[Module]] = {}
    for module in modules.values():
        if module.name == PACKAGE:
            continue
        groups.setdefault(group_of(module.name.removeprefix(PACKAGE + ".")), []).append(module)
    package_graph: dict[str, set[str]] = {g: set() for g in groups}
    for module in modules.values():
        if module.name == PACKAGE:
            continue
        mine = group_of(module.name.removeprefix(PACKAGE + "."))
        for target in module.imports:
            theirs = group_of(target.removeprefix(PACKAGE + "."))
            if theirs != mine:
                package_graph[mine].add(theirs)
    module_graph = {m.name: set(m.imports) for m in modules.values()}
    module_edges = [(m, t) for m, targets in module_graph.items() for t in targets]

    lines: list[str] = []
    package_cycles = cycles(package_graph)
    module_cycles = cycles(module_graph)
    lines.append("## Import cycles")
    lines.append("")
    if not package_cycles and not module_cycles:
        lines.append("None, function-local imports included.")
    else:
        lines.append(
            "Counted over every import, function-local ones included (a group is a set of "
            "subpackages, or of modules, each reachable from each other):"
        )
        lines.append("")
        for cycle in package_cycles:
            lines.append(f"- subpackages: {', '.join(f'`{c}`' for c in cycle)}")
        two_way = sorted(
            (a, b) for a in package_graph for b in package_graph[a]
            if a < b and a in package_graph.get(b, ())
        )  # fmt: skip
        if two_way:
            lines.append("")
            lines.append("Subpackages that import each other, and the imports that do it:")
            lines.append("")
        for a, b in two_way:
            edges = [
                f"`{m.removeprefix(PACKAGE + '.')}` imports `{t.removeprefix(PACKAGE + '.')}`"
                for m, t in sorted(module_edges)
                if {
                    group_of(m.removeprefix(PACKAGE + ".")),
                    group_of(t.removeprefix(PACKAGE + ".")),
                }
                == {a, b}
            ]
            lines.append(f"- `{a}` and `{b}`: {'; '.join(edges)}")
        for cycle in module_cycles:
            short = [c.removeprefix(PACKAGE + ".") for c in cycle]
            lines.append(f"- modules: {', '.join(f'`{c}`' for c in short)}")
    lines.append("")

    lines.append("## Packages and modules")
    lines.append("")
    lines.append(
        "In layers: each part comes after the parts it imports (where a cycle allows), so "
        "data flows down the page."
    )
    lines.append("")
    for group in layered(package_graph):
        members = sorted(groups[group], key=lambda m: (m.path.name != "__init__.py", m.name))
        is_dir = (root / PACKAGE / group).is_dir()
        lines.append(f"### `{PACKAGE}/{group}{'/' if is_dir else '.py'}`")
        lines.append("")
        uses = sorted(package_graph[group])
        lines.append(
            "Imports from: "
            + (", ".join(f"`{u}`" for u in uses) if uses else "nothing of the package")
            + "."
        )
        lines.append("")
        if is_dir:
            init = members[0]
            if init.docstring:
                lines.append(init.docstring.strip())
                lines.append("")
            lines.append("| module | what it is for |")
            lines.append("|---|---|")
            for module in members[1:]:
                summary = _cell(_first_paragraph(module.docstring))
                lines.append(f"| `{module.path.name}` | {summary} |")
        else:
            lines.append(_first_paragraph(members[0].docstring) or "-")
        lines.append("")
    return "\n".join(lines)


def _shell_comment(path: Path) -> str:
    """The opening comment of a shell script (after the #! line), as one paragraph."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text:
            break
        lines.append(text)
    return " ".join(lines)


def scripts_markdown(root: Path = ROOT) -> str:
    lines = ["| script | what it is for |", "|---|---|"]
    for path in sorted((root / "scripts").rglob("*")):
        if path.suffix == ".py":
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            summary = _first_paragraph(ast.get_docstring(tree) or "")
        elif path.suffix == ".sh":
            summary = _shell_comment(path)
        else:
            continue
        name = path.relative_to(root).as_posix()
        lines.append(f"| `{name}` | {_cell(summary)} |")
    return "\n".join(lines)


def help_text(command: str | None, root: Path = ROOT) -> str:
    """`cam-cli [COMMAND] --help`, as click formats it at a fixed width (this checkout's code:
    the command modules import no torch, so this is cheap)."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import typer.main

    from cam_cli.cli.main import app

    group = typer.main.get_command(app)  # typer's own copy of click: its own context class
    width = {"terminal_width": HELP_WIDTH, "max_content_width": HELP_WIDTH}
    with group.context_class(group, info_name="cam-cli", **width) as context:
        if command is None:
            return group.get_help(context)
        sub = group.get_command(context, command)
        if sub is None:
            raise ValueError(f"generated help: cam-cli has no command {command!r}")
        with sub.context_class(sub, info_name=command, parent=context, **width) as inner:
            return sub.get_help(inner)


def _generated(match: re.Match[str]) -> str:
    kind, command = match.group(1), match.group(2)
    if kind == "architecture":
        return architecture_markdown()
    if kind == "scripts":
        return scripts_markdown()
    return "```text\n" + help_text(command).rstrip() + "\n```"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    return GENERATED.sub(_generated, markdown)
