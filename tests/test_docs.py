"""The examples in the documentation run.

Every fenced ```python block in README.md and docs/**/*.md is executed in a
fresh namespace, unless its first line is ``# not-run``. Every ```yaml block
in docs/policy-language.md whose first line is ``# policy`` must load as a
policy. A failing example is a documentation bug: fix the text or the code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentauthz import Policy

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    file: Path
    line: int  # 1-based line of the opening fence
    language: str
    source: str

    @property
    def id(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def fenced_blocks(text: str, path: Path) -> list[Block]:
    """Every fenced code block of Markdown ``text`` (read from ``path``), with its language."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, ticks = opening["indent"], opening["ticks"]
        language = opening["info"].strip().split(" ")[0].lower()
        start = i
        body = []
        i += 1
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            if closing is not None and closing["ticks"].startswith(ticks) \
                    and not closing["info"].strip():
                break
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        else:
            raise AssertionError(f"{path}:{start + 1}: code block is never closed")
        blocks.append(Block(path, start + 1, language, "\n".join(body) + "\n"))
        i += 1
    return blocks


def _first_line(block: Block) -> str:
    return block.source.lstrip("\n").split("\n", 1)[0].strip()


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _blocks(path: Path) -> list[Block]:
    return fenced_blocks(path.read_text(encoding="utf-8"), path)


def _python_blocks() -> list[Block]:
    return [b for path in _markdown_files() if path.exists() for b in _blocks(path)
            if b.language == "python" and _first_line(b) != "# not-run"]


def _policy_blocks() -> list[Block]:
    path = DOCS / "policy-language.md"
    if not path.exists():
        return []
    return [b for b in _blocks(path)
            if b.language in ("yaml", "yml") and _first_line(b) == "# policy"]


PYTHON_BLOCKS = _python_blocks()
POLICY_BLOCKS = _policy_blocks()


def test_the_documentation_has_examples() -> None:
    assert len(PYTHON_BLOCKS) >= 5, "expected runnable python examples in README.md and docs/"
    assert len(POLICY_BLOCKS) >= 5, "expected '# policy' YAML blocks in docs/policy-language.md"


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.id for b in PYTHON_BLOCKS])
def test_python_example_runs(block: Block, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # ...and read the repository's
    code = compile(block.source, f"<doc block {block.id}>", "exec")
    exec(code, {"__name__": "__doc_example__"})


@pytest.mark.parametrize("block", POLICY_BLOCKS, ids=[b.id for b in POLICY_BLOCKS])
def test_policy_example_loads(block: Block) -> None:
    policy = Policy.from_yaml(block.source, source=block.id)
    assert policy.types


def test_fence_parser() -> None:
    text = "intro\n```python\n# not-run\nx = 1\n```\n\n````yaml\n# policy\n```\n````\n"
    blocks = fenced_blocks(text, DOCS / "probe.md")
    assert [(b.language, b.line) for b in blocks] == [("python", 2), ("yaml", 7)]
    assert blocks[0].source == "# not-run\nx = 1\n"
    assert blocks[1].source == "# policy\n```\n"
