"""The hash chain: every kind of tampering is detected, at the right line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentauthz.audit import GENESIS, verify
from agentauthz.audit.chain import Chain, canonical, resume

N = 8


def records(n: int = N) -> list[str]:
    chain = Chain()
    return [chain.seal({"id": f"d{i}", "outcome": "allow", "note": f"record {i} é"})
            for i in range(1, n + 1)]


def write(path: Path, lines: list[str], *, newline_at_end: bool = True) -> Path:
    path.write_text("\n".join(lines) + ("\n" if newline_at_end else ""), encoding="utf-8")
    return path


def forge(record: dict[str, object], prev: str) -> str:
    """A record an attacker computed correctly: consistent hash, linked to ``prev``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    body["prev"] = prev
    return Chain(int(body["seq"]) - 1, prev).seal(  # type: ignore[call-overload]
        {k: v for k, v in body.items() if k not in ("seq", "prev")})


@pytest.fixture
def lines() -> list[str]:
    return records()


def test_an_untouched_chain_verifies(tmp_path: Path, lines: list[str]) -> None:
    result = verify(write(tmp_path / "a.jsonl", lines))
    assert result and result.records == N and result.problem is None
    assert result.head == json.loads(lines[-1])["hash"]
    assert str(result).startswith(f"ok: {N} records")


def test_an_empty_file_verifies(tmp_path: Path) -> None:
    result = verify(write(tmp_path / "a.jsonl", [], newline_at_end=False))
    assert result and result.records == 0 and result.head is None


def test_the_first_record_links_to_genesis(lines: list[str]) -> None:
    first = json.loads(lines[0])
    assert first["seq"] == 1 and first["prev"] == GENESIS
    assert json.loads(lines[1])["prev"] == first["hash"]


def test_the_hash_covers_the_canonical_form(lines: list[str]) -> None:
    import hashlib

    record = json.loads(lines[2])
    digest = record.pop("hash")
    assert hashlib.sha256((record["prev"] + canonical(record)).encode()).hexdigest() == digest
    assert lines[2].isascii()


def _expect(result: object, problem: str, line: int) -> None:
    assert not result, result
    assert (result.problem, result.line) == (problem, line), str(result)  # type: ignore[attr-defined]


def test_edited_record_is_named(tmp_path: Path, lines: list[str]) -> None:
    lines[2] = lines[2].replace('"outcome":"allow"', '"outcome":"deny"')
    result = verify(write(tmp_path / "a.jsonl", lines))
    _expect(result, "edited", 3)
    assert result.records == 2 and "does not match its hash" in result.message
    assert str(result).startswith(f"{tmp_path / 'a.jsonl'}:3: edited")


def test_edited_record_with_recomputed_hash_is_named(tmp_path: Path, lines: list[str]) -> None:
    record = json.loads(lines[2])
    record["outcome"] = "deny"
    lines[2] = forge(record, record["prev"])
    _expect(verify(write(tmp_path / "a.jsonl", lines)), "edited", 3)


def test_reformatted_but_unchanged_record_still_verifies(tmp_path: Path,
                                                         lines: list[str]) -> None:
    lines[2] = json.dumps(json.loads(lines[2]), indent=None)  # spaces after separators
    assert verify(write(tmp_path / "a.jsonl", lines))


@pytest.mark.parametrize("index", [0, 3, N - 2])
def test_dropped_record_is_named(tmp_path: Path, lines: list[str], index: int) -> None:
    del lines[index]
    result = verify(write(tmp_path / "a.jsonl", lines))
    _expect(result, "dropped", index + 1)
    assert f"{index + 1}" in result.message


def test_several_dropped_records(tmp_path: Path, lines: list[str]) -> None:
    del lines[2:5]
    result = verify(write(tmp_path / "a.jsonl", lines))
    _expect(result, "dropped", 3)
    assert "records 3 to 5 missing" in result.message


def test_swapped_records_are_named(tmp_path: Path, lines: list[str]) -> None:
    lines[3], lines[4] = lines[4], lines[3]
    result = verify(write(tmp_path / "a.jsonl", lines))
    _expect(result, "reordered", 4)
    assert ":5" in result.message  # where the missing record went


def test_record_moved_to_the_end_is_named(tmp_path: Path, lines: list[str]) -> None:
    lines.append(lines.pop(1))
    _expect(verify(write(tmp_path / "a.jsonl", lines)), "reordered", 2)


def test_record_moved_back_is_named(tmp_path: Path, lines: list[str]) -> None:
    lines.insert(5, lines.pop(1))  # record 2 now after record 6: line 2 holds record 3
    _expect(verify(write(tmp_path / "a.jsonl", lines)), "reordered", 2)


def test_inserted_forged_record_is_named(tmp_path: Path, lines: list[str]) -> None:
    third = json.loads(lines[2])
    fake = {"id": "forged", "outcome": "allow", "note": "I was never decided", "seq": 4}
    lines.insert(3, forge({**fake, "hash": ""}, third["hash"]))
    result = verify(write(tmp_path / "a.jsonl", lines))
    _expect(result, "inserted", 4)


def test_inserted_record_with_a_wrong_hash_is_named(tmp_path: Path, lines: list[str]) -> None:
    fake = json.loads(lines[2])
    fake["id"] = "forged"
    lines.insert(3, json.dumps(fake))
    _expect(verify(write(tmp_path / "a.jsonl", lines)), "inserted", 4)


def test_inserted_first_record_is_named(tmp_path: Path, lines: list[str]) -> None:
    lines.insert(0, forge({"id": "forged", "seq": 1, "hash": ""}, GENESIS))
    _expect(verify(write(tmp_path / "a.jsonl", lines)), "inserted", 1)


def test_replayed_record_is_named(tmp_path: Path, lines: list[str]) -> None:
    lines.insert(5, lines[1])
    result = verify(write(tmp_path / "a.jsonl", lines))
    _expect(result, "inserted", 6)
    assert "copy of record 2" in result.message and ":2" in result.message


def test_truncated_last_line_is_named(tmp_path: Path, lines: list[str]) -> None:
    lines[-1] = lines[-1][:40]
    _expect(verify(write(tmp_path / "a.jsonl", lines, newline_at_end=False)), "truncated", N)


@pytest.mark.parametrize(("line", "problem"), [
    ("not json at all", "garbled"), ("", "garbled"), ("[1, 2]", "garbled"),
    ('{"seq": 3}', "garbled")])
def test_garbled_line_is_named(tmp_path: Path, lines: list[str], line: str,
                               problem: str) -> None:
    lines.insert(3, line)
    _expect(verify(write(tmp_path / "a.jsonl", lines)), problem, 4)


def test_non_utf8_bytes_are_garbled(tmp_path: Path, lines: list[str]) -> None:
    path = write(tmp_path / "a.jsonl", lines)
    with path.open("ab") as f:
        f.write(b"\xff\xfe\n")
    _expect(verify(path), "garbled", N + 1)


def test_chain_across_files(tmp_path: Path, lines: list[str]) -> None:
    old = write(tmp_path / "a.jsonl.1", lines[:5])
    new = write(tmp_path / "a.jsonl", lines[5:])
    assert verify([old, new]).records == N
    wrong_order = verify([new, old])
    assert not wrong_order and wrong_order.problem == "dropped"
    assert "pass those first" in wrong_order.message
    alone = verify([new])
    _expect(alone, "dropped", 1)
    partial = verify([new], partial=True)
    assert partial and partial.records == N - 5
    both_twice = verify([old, old])
    _expect(both_twice, "inserted", 1)
    assert both_twice.file == str(old)


def test_dropped_record_at_a_file_boundary(tmp_path: Path, lines: list[str]) -> None:
    old = write(tmp_path / "a.jsonl.1", lines[:4])
    new = write(tmp_path / "a.jsonl", lines[5:])
    result = verify([old, new])
    _expect(result, "dropped", 1)
    assert result.file == str(new)


def test_a_missing_file_is_unreadable(tmp_path: Path) -> None:
    result = verify([tmp_path / "nope.jsonl"])
    assert not result and result.problem == "unreadable" and result.line is None


def test_resume_reads_the_last_record(tmp_path: Path, lines: list[str]) -> None:
    path = write(tmp_path / "a.jsonl", lines)
    state = resume(path)
    assert state is not None
    chain, ends_with_newline = state
    assert (chain.seq, chain.head, ends_with_newline) == (N, json.loads(lines[-1])["hash"], True)
    assert resume(tmp_path / "missing") is None
    path.write_text(lines[0] + "\n" + lines[1][:30], encoding="utf-8")
    state = resume(path)
    assert state is not None and state[0].seq == 1 and state[1] is False
