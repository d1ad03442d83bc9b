"""The agentauthz pytest plugin: the ``authz`` fixture, two markers, ``*.authz.yaml`` files.

Installing agentauthz registers it (the ``pytest11`` entry point); ``-p
no:agentauthz`` turns it off. It provides:

- the ``authz`` fixture: a fresh :class:`~agentauthz.testing.RecordingAuthorizer`
  per test, its policy and data from ``@pytest.mark.authz_policy("policy.yaml",
  data="data.yaml")`` (paths relative to the test file) or from the ini
  options ``authz_policy`` and ``authz_data`` (relative to the ini file), its
  relationships in memory, and ``authz.decisions``: what the code under test asked;
- ``@pytest.mark.authz_backends``: the test runs once per backend factory
  listed in the ini option ``authz_backends`` (``name = module:callable``;
  by default only ``local``), or once per backend it names;
- every ``*.authz.yaml`` (or ``.authz.yml``) file collected as tests, one per
  case; ``--authz-coverage`` reports what those cases did not exercise.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import pytest

from agentauthz.engine.data import load_data
from agentauthz.errors import AgentAuthzError, PolicyError
from agentauthz.policy.loader import read_source
from agentauthz.policy.schema import Policy
from agentauthz.testing import RecordingAuthorizer
from agentauthz.testing.cases import (
    Case,
    CaseFile,
    CaseResult,
    Coverage,
    load_file,
    merge_coverage,
    run_case,
)
from agentauthz.typing import Backend

__all__ = ["AuthzCase", "AuthzFile"]

BackendFactory = Callable[[Policy, "Mapping[str, Any] | None"], Backend]

_DEFAULT_BACKENDS: Final = ["local = agentauthz.testing:local_backend"]
_BACKEND_LINE: Final = re.compile(r"(?:(?P<name>[\w.-]+)\s*=\s*)?(?P<module>[\w.]+):(?P<attr>[\w.]+)")
_SUFFIXES: Final = (".authz.yaml", ".authz.yml")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("authz_policy", "the authz fixture's policy file, relative to the ini file "
                  "(the authz_policy marker overrides it)", default="")
    parser.addini("authz_data", "the authz fixture's data file (relationships and attributes), "
                  "relative to the ini file", default="")
    parser.addini("authz_backends", "backend factories for @pytest.mark.authz_backends, one per "
                  "line: 'name = module:callable'; the first one also serves unmarked tests",
                  type="linelist", default=_DEFAULT_BACKENDS)
    group = parser.getgroup("agentauthz")
    group.addoption("--authz-coverage", action="store_true", default=False,
                    help="after the run, name the policy rules, relations and permissions that "
                         "no *.authz.yaml case exercised")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "authz_policy(policy, data=None, agents=None): the policy of the authz "
                   "fixture (a path relative to the test file, YAML text or a mapping), its data "
                   "and its agent registry")
    config.addinivalue_line(
        "markers", "authz_backends(*names): run the test once per backend factory of the "
                   "authz_backends ini option (every one, or those named)")
    config.stash[_STATE] = _State(config)


# ------------------------------------------------------------- the fixture
class _State:
    """Per-session caches (a policy is immutable: parse each file once) and settings."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.backends: dict[str, str] = {}
        for line in config.getini("authz_backends"):
            m = _BACKEND_LINE.fullmatch(line.strip())
            if m is None:
                raise pytest.UsageError(f"authz_backends: cannot read {line!r}; write "
                                        "'name = module:callable', e.g. "
                                        "'local = agentauthz.testing:local_backend'")
            self.backends[m["name"] or m["attr"].rpartition(".")[2]] = f"{m['module']}:{m['attr']}"
        if not self.backends:
            raise pytest.UsageError("authz_backends lists no backend factory")
        self.base = config.inipath.parent if config.inipath is not None else config.rootpath
        self._policies: dict[Any, Policy] = {}
        self._data: dict[Any, Mapping[str, Any]] = {}
        self._factories: dict[str, BackendFactory] = {}
        self.files: list[tuple[CaseFile, list[CaseResult]]] = []

    def factory(self, name: str) -> BackendFactory:
        factory = self._factories.get(name)
        if factory is None:
            spec = self.backends[name]
            module, _, attr = spec.partition(":")
            try:
                found: Any = importlib.import_module(module)
                for part in attr.split("."):
                    found = getattr(found, part)
            except (ImportError, AttributeError) as exc:
                pytest.fail(f"authz_backends: backend {name!r} = {spec!r} cannot be imported: "
                            f"{exc}", pytrace=False)
            if not callable(found):
                pytest.fail(f"authz_backends: {spec!r} is not callable", pytrace=False)
            factory = self._factories[name] = found
        return factory

    def policy(self, source: Any, base: Path) -> Policy:
        if isinstance(source, Policy):
            return source
        path = _path(source, base)
        if path is None:
            return Policy.load(source)
        key = (path, path.stat().st_mtime_ns) if path.exists() else path
        if key not in self._policies:
            self._policies[key] = Policy.load(path)
        return self._policies[key]

    def data(self, source: Any, base: Path) -> Mapping[str, Any] | None:
        if source is None or isinstance(source, Mapping):
            return source
        path = _path(source, base)
        key = source if path is None else (path, path.stat().st_mtime_ns) if path.exists() else path
        if key not in self._data:
            target = source if path is None else path
            load_data(target)  # validates the shape, with the file's positions in any problem
            data = read_source(target).data
            self._data[key] = data if isinstance(data, dict) else {}
        return self._data[key]


_STATE: Final = pytest.StashKey[_State]()


def _path(source: Any, base: Path) -> Path | None:
    """A file path (relative ones from ``base``), or ``None`` for YAML text or a mapping."""
    if isinstance(source, os.PathLike):
        return base / source
    if isinstance(source, str) and "\n" not in source:
        return base / source
    return None


@pytest.fixture
def authz_backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend factory the ``authz`` fixture decides with."""
    state = request.config.stash[_STATE]
    name: str = getattr(request, "param", None) or next(iter(state.backends))
    return name


@pytest.fixture
def authz(request: pytest.FixtureRequest, authz_backend: str) -> RecordingAuthorizer:
    """A fresh authorizer for this test: its policy and data from the ``authz_policy`` marker
    or the ini options, decisions recorded in ``authz.decisions``."""
    state = request.config.stash[_STATE]
    marker = request.node.get_closest_marker("authz_policy")
    if marker is not None:
        unknown = set(marker.kwargs) - {"data", "agents"}
        if len(marker.args) != 1 or unknown:
            pytest.fail("@pytest.mark.authz_policy takes one policy and the keywords data= and "
                        f"agents= (got {len(marker.args)} arguments"
                        + (f", unknown {sorted(unknown)}" if unknown else "") + ")", pytrace=False)
        base = request.path.parent
        policy_source, data_source = marker.args[0], marker.kwargs.get("data")
        agents = marker.kwargs.get("agents")
    else:
        policy_source = request.config.getini("authz_policy")
        if not policy_source:
            pytest.fail("the authz fixture needs a policy: mark the test with "
                        "@pytest.mark.authz_policy('policy.yaml'), or set authz_policy (and "
                        "authz_data) in the pytest configuration", pytrace=False)
        base = state.base
        data_source = request.config.getini("authz_data") or None
        agents = None
    try:
        policy = state.policy(policy_source, base)
        data = state.data(data_source, base)
        backend = state.factory(authz_backend)(policy, data)
        agents_path = _path(agents, base)
        return RecordingAuthorizer(backend=backend,
                                   agents=agents if agents_path is None else agents_path)
    except AgentAuthzError as exc:
        pytest.fail(f"the authz fixture could not be built: {exc}", pytrace=False)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("authz_backends")
    if marker is None:
        return
    if "authz_backend" not in metafunc.fixturenames:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: @pytest.mark.authz_backends runs "
                                "a test once per backend of the authz fixture, but the test does "
                                "not use the authz fixture")
    configured = metafunc.config.stash[_STATE].backends
    names = list(marker.args) or list(configured)
    unknown = [n for n in names if n not in configured]
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: @pytest.mark.authz_backends names "
                                f"{', '.join(map(repr, unknown))}, not in authz_backends "
                                f"({', '.join(configured)})")
    metafunc.parametrize("authz_backend", names, indirect=True, ids=names)


# --------------------------------------------------------- *.authz.yaml files
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> AuthzFile | None:
    if file_path.name.endswith(_SUFFIXES):
        return AuthzFile.from_parent(parent, path=file_path)
    return None


class AuthzFile(pytest.File):
    """A policy test file: one item per case, all decided by one authorizer."""

    case_file: CaseFile

    def collect(self) -> Iterator[AuthzCase]:
        try:
            shown = os.path.relpath(self.path)  # what the reader sees in each problem
        except ValueError:  # another drive
            shown = str(self.path)
        try:
            self.case_file = load_file(shown)
        except PolicyError as exc:
            raise self.CollectError(str(exc).replace("invalid policy:",
                                                     "invalid policy test file:", 1)) from None
        results: list[CaseResult] = []
        self.config.stash[_STATE].files.append((self.case_file, results))
        for case in self.case_file.cases:
            yield AuthzCase.from_parent(self, name=case.name, case=case, results=results)


class _CaseFailed(Exception):
    def __init__(self, result: CaseResult) -> None:
        super().__init__(result.failure)
        self.result = result


class AuthzCase(pytest.Item):
    """One case of a policy test file."""

    def __init__(self, *, case: Case, results: list[CaseResult], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self._results = results

    def runtest(self) -> None:
        assert isinstance(self.parent, AuthzFile)
        result = run_case(self.parent.case_file.authz, self.case)
        self._results.append(result)
        if not result.passed:
            raise _CaseFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        if isinstance(excinfo.value, _CaseFailed):
            return excinfo.value.result.report()
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, (self.case.line or 1) - 1, f"authz case: {self.case.name}"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not config.getoption("authz_coverage"):
        return
    coverages = [Coverage.of(case_file.policy, results, case_file.path)
                 for case_file, results in config.stash[_STATE].files if results]
    terminalreporter.section("agentauthz policy coverage")
    if not coverages:
        terminalreporter.write_line("no *.authz.yaml case ran")
    for coverage in merge_coverage(coverages):
        terminalreporter.write_line(coverage.render())
