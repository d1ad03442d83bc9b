from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from agentauthz.audit import JsonlFileSink, LoggingSink, MemorySink, verify
from agentauthz.errors import ConfigurationError

from .conftest import MakeRecord


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------ memory
def test_memory_sink_keeps_records(make_record: MakeRecord) -> None:
    sink = MemorySink()
    first, second = make_record(), make_record(allowed=False)
    sink.emit(first)
    sink.emit(second)
    assert sink.records == [first, second] and len(sink) == 2
    sink.clear()
    assert sink.records == []


def test_a_full_memory_sink_reports_what_it_drops(make_record: MakeRecord,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink(maxlen=2)
    records = [make_record() for _ in range(5)]
    with caplog.at_level(logging.WARNING, "agentauthz.audit"):
        for r in records:
            sink.emit(r)
    assert sink.records == records[-2:] and sink.dropped == 3
    assert [r.levelname for r in caplog.records] == ["WARNING"]  # once, not per record
    assert "MemorySink is full" in caplog.text


def test_memory_sink_validates_its_size() -> None:
    with pytest.raises(ConfigurationError):
        MemorySink(maxlen=0)


# ----------------------------------------------------------------- logging
def test_logging_sink_logs_structured_records(make_record: MakeRecord,
                                              caplog: pytest.LogCaptureFixture) -> None:
    sink = LoggingSink(deny_level=logging.WARNING)
    with caplog.at_level(logging.INFO, "agentauthz.decisions"):
        sink.emit(make_record(context={"token": "abc"}))
        sink.emit(make_record("user:bob", allowed=False))
    allow, deny = caplog.records
    assert allow.name == "agentauthz.decisions" and allow.levelno == logging.INFO
    assert deny.levelno == logging.WARNING
    assert allow.getMessage().startswith("ALLOW user:alice read document:1")
    data = allow.agentauthz  # type: ignore[attr-defined]
    assert data["context"] == {"token": "[REDACTED]"} and data["outcome"] == "allow"
    assert deny.agentauthz["principal"] == "user:bob"  # type: ignore[attr-defined]


def test_logging_sink_renders_nothing_when_disabled(make_record: MakeRecord) -> None:
    logger = logging.getLogger("agentauthz.test.silent")
    logger.setLevel(logging.ERROR)
    record = make_record(redactor=_Exploding())  # rendering would raise
    LoggingSink(logger).emit(record)


class _Exploding:
    def context(self, context: Any) -> Any:
        raise RuntimeError("rendered")

    def text(self, text: str) -> str:
        raise RuntimeError("rendered")

    def arguments(self, tool: str, arguments: Any) -> Any:
        raise RuntimeError("rendered")


# -------------------------------------------------------------------- file
@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "decisions.jsonl"


def test_file_sink_writes_a_verifiable_chain(make_record: MakeRecord, path: Path) -> None:
    with JsonlFileSink(path) as sink:
        for i in range(10):
            sink.emit(make_record(f"user:u{i}", context={"password": "p"}))
        assert sink.flush()
        rows = read(path)
        assert [r["principal"] for r in rows] == [f"user:u{i}" for i in range(10)]
        assert rows[0]["context"] == {"password": "[REDACTED]"}
        assert sink.written == 10 and sink.dropped == sink.failed == 0
    result = verify(path)
    assert result and result.records == 10


def test_file_sink_resumes_the_chain_after_a_restart(make_record: MakeRecord, path: Path) -> None:
    with JsonlFileSink(path) as sink:
        for _ in range(3):
            sink.emit(make_record())
    with JsonlFileSink(path) as sink:  # a new process, the same file
        for _ in range(2):
            sink.emit(make_record())
    rows = read(path)
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[3]["prev"] == rows[2]["hash"]
    assert verify(path).records == 5


def test_a_partial_last_line_is_kept_and_reported(make_record: MakeRecord, path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with JsonlFileSink(path) as sink:
        sink.emit(make_record())
        sink.emit(make_record())
    with path.open("ab") as f:
        f.write(b'{"id": "cut sho')  # the process died mid-write
    with caplog.at_level(logging.ERROR, "agentauthz.audit"), JsonlFileSink(path) as sink:
        sink.emit(make_record())
    assert "partial line" in caplog.text
    result = verify(path)
    assert (result.problem, result.line) == ("truncated", 3)
    assert read_lines(path)[3].startswith("{")  # the new record is on its own line


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_rotation_keeps_one_chain_across_files(make_record: MakeRecord, path: Path) -> None:
    with JsonlFileSink(path, rotate_bytes=2_000) as sink:
        for _ in range(30):
            sink.emit(make_record())
    rotated = sorted(path.parent.glob("decisions.jsonl.*"),
                     key=lambda p: int(p.suffix[1:]), reverse=True)
    assert len(rotated) >= 3
    files = [*rotated, path]
    assert all(p.stat().st_size < 2_000 + 1_000 for p in files)
    result = verify(files)
    assert result and result.records == 30
    assert not verify([path])  # the newest alone: its start is in the older files
    assert verify([path], partial=True)


def test_rotation_keeps_at_most_backups(make_record: MakeRecord, path: Path) -> None:
    with JsonlFileSink(path, rotate_bytes=1_500, backups=2) as sink:
        for _ in range(40):
            sink.emit(make_record())
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "decisions.jsonl", "decisions.jsonl.1", "decisions.jsonl.2"]
    assert verify([path.parent / "decisions.jsonl.2", path.parent / "decisions.jsonl.1", path],
                  partial=True)


def test_restart_after_rotation_chains_from_the_rotated_file(make_record: MakeRecord,
                                                              path: Path) -> None:
    with JsonlFileSink(path) as sink:
        sink.emit(make_record())
    os.rename(path, f"{path}.1")  # rotated by another tool while the process was down
    with JsonlFileSink(path) as sink:
        sink.emit(make_record())
    assert verify([f"{path}.1", path]).records == 2


def test_a_file_moved_away_while_writing_is_reopened(make_record: MakeRecord, path: Path) -> None:
    with JsonlFileSink(path) as sink:
        sink.emit(make_record())
        sink.flush()
        os.rename(path, f"{path}.1")  # logrotate
        sink.emit(make_record())
        sink.flush()
        assert path.exists()
    assert verify([f"{path}.1", path]).records == 2


def test_a_full_buffer_is_counted_and_logged(make_record: MakeRecord, path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    sink = JsonlFileSink(path, buffer=3)
    try:
        with caplog.at_level(logging.ERROR, "agentauthz.audit"), sink._lock:
            for _ in range(10):  # the writer is held up: nothing drains
                sink.emit(make_record())
            assert sink.dropped == 7
    finally:
        sink.close()
    assert "buffer is full" in caplog.text and "7 dropped" not in caplog.text  # logged once
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert verify(path).records == 3


def test_a_record_that_cannot_be_rendered_is_counted(make_record: MakeRecord, path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, "agentauthz.audit"), JsonlFileSink(path) as sink:
        sink.emit(make_record())
        sink.emit(make_record(redactor=_Exploding()))
        sink.emit(make_record())
        sink.flush()
        assert (sink.written, sink.failed) == (2, 1)
    assert "could not be rendered" in caplog.text
    assert verify(path).records == 2


def test_a_failing_disk_is_counted_and_the_chain_resumes(make_record: MakeRecord, path: Path,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    with JsonlFileSink(path) as sink:
        sink.emit(make_record())
        sink.flush()
        real = sink._file

        class Full:
            closed = False

            def write(self, data: bytes) -> int:
                raise OSError(28, "No space left on device")

            def flush(self) -> None:
                pass

            def fileno(self) -> int:
                return real.fileno()

            def close(self) -> None:
                pass

        with caplog.at_level(logging.ERROR, "agentauthz.audit"):
            sink._file = Full()
            sink.emit(make_record())
            sink.flush()
        real.close()
        assert not isinstance(sink._file, Full)  # the sink reopened the file by itself
        sink.emit(make_record())
        sink.flush()
        assert (sink.written, sink.failed) == (2, 1)
    assert "No space left" in caplog.text
    assert verify(path).records == 2


def test_emit_after_close_is_counted(make_record: MakeRecord, path: Path) -> None:
    sink = JsonlFileSink(path)
    sink.close()
    sink.close()
    sink.emit(make_record())
    assert sink.dropped == 1
    assert sink.flush()


def test_concurrent_emitters_make_one_chain(make_record: MakeRecord, path: Path) -> None:
    record = make_record()
    with JsonlFileSink(path, buffer=100_000) as sink:
        def work() -> None:
            for _ in range(500):
                sink.emit(record)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert verify(path).records == 2_000


@pytest.mark.parametrize("options", [{"rotate_bytes": 0}, {"buffer": 0}, {"backups": 0},
                                     {"interval": 0}])
def test_file_sink_validates_its_options(path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        JsonlFileSink(path, **options)


def test_file_sink_needs_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        JsonlFileSink(tmp_path / "nope" / "a.jsonl")
