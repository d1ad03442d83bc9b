"""Developer sessions: ``nox -s tests lint typecheck``; ``nox -s bench``; ``nox -s docs``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The whole test suite, examples included."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "src")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks against the peer engines, measured in the same run (see docs/benchmarks.md).

    The peers run from their own venv (/tmp/peervenv), built by the shared
    harness's setup.sh when it is missing; ``nox -s bench -- --quick`` for a
    smoke run.
    """
    session.install("-e", ".[fastapi]")
    session.run("python", "benchmarks/run.py", "--setup-peer-venv", *session.posargs)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ (fails on broken links)."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict")
