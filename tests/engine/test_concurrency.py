"""Checks running while another thread writes: no errors, no allow that neither state gives."""

from __future__ import annotations

import sys
import threading

from agentauthz import Authorizer

POLICY = """
types:
  user: {}
  team: {relations: {member: [user]}}
  folder: {relations: {owner: [team#member]}, permissions: {read: owner}}
  doc:
    relations: {parent: [folder]}
    permissions: {read: parent->read}
"""


def test_checks_during_writes_never_error() -> None:
    a = Authorizer(POLICY)
    a.write(add=[("folder:f", "owner", "team:t#member")]
            + [(f"doc:{i}", "parent", "folder:f") for i in range(50)]
            + [("team:t", "member", f"user:{i}") for i in range(200)])
    stop = threading.Event()
    errors: list[str] = []
    wrong: list[str] = []

    def writer() -> None:
        n = 0
        while not stop.is_set():
            # churn the sets that checks iterate: team members and doc parents
            a.write(add=[("doc:0", "parent", f"folder:g{n}"), ("doc:0", "parent", f"folder:h{n}")])
            a.write(remove=[("doc:0", "parent", f"folder:g{n}"), ("doc:0", "parent", f"folder:h{n}")])
            n += 1

    def reader() -> None:
        for _ in range(3000):
            d = a.check("user:7", "read", "doc:0")
            if any(r.kind == "evaluation_error" for r in d.reasons):
                errors.append(str(d))
            if not d.allowed:
                wrong.append(str(d))
            nobody = a.check("user:nobody", "read", "doc:0")
            if any(r.kind == "evaluation_error" for r in nobody.reasons):
                errors.append(str(nobody))
            if nobody.allowed:
                wrong.append("nobody was allowed")

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader)
                                                   for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join()
    stop.set()
    threads[0].join()
    sys.setswitchinterval(previous)
    assert errors == []
    assert wrong == []
