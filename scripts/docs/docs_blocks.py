"""The code blocks of the documentation (README.md, CONTRIBUTING.md, docs/**/*.md) with what
the line before each says about it, and the `cam-cli` calls in a shell block.

A shell block is either run (``<!-- run -->`` just before it, by tests/test_docs_commands.py;
``<!-- run: prints the text block below -->``: and its stdout must be that block) or says why
it is not (``<!-- not run: REASON -->``). A Python block says which test runs it
(``<!-- python: run by tests/test_readme_api.py -->``) or why none does. Every block names its
language (``text`` for output), so a command cannot hide in an unnamed block.
`scripts/check_wheel.py` finds the blocks it runs by a word of their marker.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHELL = frozenset({"bash", "sh", "shell", "console"})
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
MARKER = re.compile(r"^<!--\s*(?P<kind>run|not run|python)\s*(?::\s*(?P<note>.*?))?\s*-->$")
COMPARE = "prints the text block below"
WRAPPERS = frozenset({"time", "nice", "exec", "env"})


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    kind: str | None  # "run", "not run", "python", or None: no marker
    note: str  # what the marker says after its colon
    comment: str | None  # an HTML comment just before the block that is not a marker

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO).as_posix()}:{self.line}"


def documentation_files(repo: Path = REPO) -> list[Path]:
    """README.md, CONTRIBUTING.md and every page under docs/."""
    files = [repo / "README.md", repo / "CONTRIBUTING.md"]
    return [f for f in files if f.is_file()] + sorted((repo / "docs").rglob("*.md"))


def read_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening.group("fence")
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.match(before)
        comment = before if before.startswith("<!--") and not marker else None
        blocks.append(
            Block(
                path=path,
                line=i + 1,
                lang=opening.group("lang").lower(),
                text="\n".join(lines[i + 1 : end]) + "\n",
                kind=marker.group("kind") if marker else None,
                note=(marker.group("note") or "") if marker else "",
                comment=comment,
            )
        )
        i = end + 1
    return blocks


def all_blocks(repo: Path = REPO) -> list[Block]:
    return [block for path in documentation_files(repo) for block in read_blocks(path)]


def next_block(block: Block) -> Block | None:
    """The block after this one in its file (the output a ``run`` block shows)."""
    blocks = read_blocks(block.path)
    later = [b for b in blocks if b.line > block.line]
    return later[0] if later else None


def cam_cli_calls(text: str) -> list[list[str]]:
    """Every `cam-cli ...` (or `python -m cam_cli ...`, `torchrun ... -m cam_cli ...`) in a
    shell block, as its arguments after the program name; comments, continuation lines, pipes,
    redirections and command separators understood."""
    joined = re.sub(r"\\\n", " ", text)
    calls: list[list[str]] = []
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;<>()")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        for token in [*lexer, "|"]:
            if token and set(token) <= set("|&;<>()"):
                calls.extend(_call(words))
                words = []
                if token[-1] in "<>":  # the next word is a file name, not an argument
                    words = ["<redirect>"]
            elif words == ["<redirect>"]:
                words = []
            else:
                words.append(token)
    return calls


def _call(words: list[str]) -> list[list[str]]:
    """The arguments of a command that runs cam-cli: its program is `cam-cli` (after any
    ``VAR=value`` and ``time``/``nice``/``exec``), or it runs ``-m cam_cli``."""
    start = 0
    while start < len(words) and ("=" in words[start] or words[start] in WRAPPERS):
        start += 1
    if start < len(words) and Path(words[start]).name == "cam-cli":
        return [words[start + 1 :]]
    for i in range(start, len(words) - 1):
        if words[i] == "-m" and words[i + 1] == "cam_cli":
            return [words[i + 2 :]]
    return []


def repo_paths(text: str) -> list[str]:
    """The scripts/... and configs/... paths a shell block names (they must exist)."""
    return re.findall(r"(?<![\w/.-])((?:scripts|configs)/[\w./-]*\w)", text)
