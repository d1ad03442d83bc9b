"""Reading policy and data files: YAML or JSON into plain data, remembering where each value was.

The position map lets every later problem name the file, line and column of
the value at fault. Inputs are bounded: a file larger than
:data:`MAX_FILE_BYTES`, nested deeper than :data:`MAX_DEPTH` or expanding to
more than :data:`MAX_NODES` values (a YAML alias bomb) is rejected with a
problem, never read into memory whole.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TypeAlias

import yaml

from agentauthz.errors import PolicyError, Problem

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "Positions", "SourceText", "read_source"]

MAX_FILE_BYTES: Final = 16 * 1024 * 1024
MAX_DEPTH: Final = 64
MAX_NODES: Final = 2_000_000

PathKey: TypeAlias = tuple[str | int, ...]


class Positions:
    """Where each value of a loaded document sits: path -> (line, column, quoted), 1-based."""

    def __init__(self, file: str | None) -> None:
        self.file = file
        self._at: dict[PathKey, tuple[int, int, bool]] = {}
        self.rule_index: dict[int, int] | None = None
        """When only some rules were valid: index among them -> index in the file."""

    def record(self, path: PathKey, line: int, column: int, quoted: bool) -> None:
        self._at[path] = (line, column, quoted)

    def problem(self, path: PathKey, message: str, *, hint: str | None = None,
                offset: int | None = None) -> Problem:
        """A problem at ``path``; ``offset`` points inside a string value (0-based)."""
        if (self.rule_index is not None and len(path) > 1 and path[0] == "rules"
                and isinstance(path[1], int)):
            path = ("rules", self.rule_index.get(path[1], path[1]), *path[2:])
        line = column = None
        probe = path
        while probe not in self._at and probe:
            probe = probe[:-1]
        if probe in self._at:
            line, column, quoted = self._at[probe]
            if offset is not None and probe == path:
                column += offset + (1 if quoted else 0)
        return Problem(message=message, path=format_path(path), file=self.file, line=line,
                       column=column, hint=hint)


def format_path(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_PLAIN_TAGS: Final = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


class _Converter:
    def __init__(self, positions: Positions) -> None:
        self.positions = positions
        self.nodes = 0
        self.loader = yaml.SafeLoader("")

    def convert(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooLarge(f"more than {MAX_NODES:,} values (is it an alias bomb?)", path)
        if depth > MAX_DEPTH:
            raise _TooLarge(f"nested deeper than {MAX_DEPTH} levels", path)
        mark = node.start_mark
        self.positions.record(path, mark.line + 1, mark.column + 1,
                              getattr(node, "style", None) in ("'", '"'))
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
            raise _TooLarge(f"unsupported YAML tag {node.tag!r}", path)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.convert(key_node, path, depth + 1)
                if isinstance(key, dict | list):
                    raise _TooLarge("a mapping key must be a scalar", path)
                if key in out:
                    raise _TooLarge(f"duplicate key {key!r}", path)
                out[key] = self.convert(value_node, (*path, str(key)), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        construct = self.loader.yaml_constructors.get(node.tag)
        if construct is None:
            raise _TooLarge(f"unsupported YAML tag {node.tag!r}", path)
        return construct(self.loader, node)


class _TooLarge(Exception):
    def __init__(self, message: str, path: PathKey) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class SourceText:
    """A loaded document: its data and the positions of its values."""

    def __init__(self, data: Any, positions: Positions) -> None:
        self.data = data
        self.positions = positions


def parse_text(text: str, file: str | None = None) -> SourceText:
    """Parse YAML (JSON is YAML) text; a syntax error is a :class:`PolicyError` with its position."""
    positions = Positions(file)
    if len(text) > MAX_FILE_BYTES:
        raise PolicyError([Problem(f"larger than {MAX_FILE_BYTES:,} bytes", file=file)])
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise PolicyError([Problem(
            f"not valid YAML: {exc.problem or exc}", file=file,
            line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None,
        )]) from exc
    except (yaml.YAMLError, RecursionError) as exc:
        raise PolicyError([Problem(f"not valid YAML: {exc}", file=file)]) from exc
    if root is None:
        return SourceText(None, positions)
    try:
        data = _Converter(positions).convert(root, (), 0)
    except _TooLarge as exc:
        raise PolicyError([positions.problem(exc.path, exc.message)]) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        raise PolicyError([Problem(f"cannot read a value: {exc}", file=file)]) from exc
    return SourceText(data, positions)


def read_source(source: str | os.PathLike[str] | Mapping[str, Any]) -> SourceText:
    """Read a path, YAML text, or an already-built mapping."""
    if isinstance(source, Mapping):
        return SourceText(dict(source), Positions(None))
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                            and source.endswith((".yaml", ".yml", ".json"))):
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise PolicyError([Problem(f"larger than {MAX_FILE_BYTES:,} bytes", file=str(path))])
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PolicyError([Problem("file not found", file=str(path),
                                       hint="check the path, relative to the working directory "
                                            f"{os.getcwd()}")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError([Problem(f"cannot read the file: {exc}", file=str(path))]) from exc
        return parse_text(text, str(path))
    if isinstance(source, str):
        return parse_text(source, None)
    raise PolicyError([Problem(f"cannot load a policy from {type(source).__name__}",
                               hint="pass a file path, YAML text, or a mapping")])
