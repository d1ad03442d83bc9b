#!/usr/bin/env python3
"""Requests per second of the example FastAPI app's document route, with and without agentauthz.

    python benchmarks/fastapi_load.py [--seconds 10] [--rounds 3] [--connections 32]

Two servers, one uvicorn worker each, on loopback ports, driven one at a time
by ``wrk`` (Debian package ``wrk``; the script says so and stops if it is
missing):

- *authorized*: ``examples/fastapi_app`` as shipped: bearer token → principal
  middleware, ``require("read", "document")`` dependency, problem+json errors;
- *unauthorized*: a FastAPI app serving the same handler over the same
  records, with no agentauthz at all.

Both answer ``GET /documents/ticket-1`` with alice's token (an allowed read).
Rounds alternate between the two servers; the report gives the median
requests/s of each and the ratio. Target: authorized within 10 % of
unauthorized. One core serves, the other runs wrk, so the figures are a
single-worker ceiling, not a capacity plan.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))


def plain_app() -> object:
    """The same handler and records, without agentauthz."""
    import yaml
    from fastapi import FastAPI
    from fastapi_app.app import HERE, Document, Library

    library = Library(yaml.safe_load((HERE / "seed.yaml").read_text(encoding="utf-8")))
    app = FastAPI()

    # response_model given as an object: this module's annotations are strings
    @app.get("/documents/{doc_id}", response_model=Document)
    async def read_document(doc_id: str):  # type: ignore[no-untyped-def]
        return library.get(doc_id)

    return app


def authorized_app() -> object:
    from fastapi_app.app import create_app

    return create_app()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(factory: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "benchmarks"), str(ROOT / "examples"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", f"fastapi_load:{factory}",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "--no-access-log"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/documents/ticket-1",
                                         headers={"Authorization": "Bearer alice-token"})
            with urllib.request.urlopen(req, timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited: {proc.stderr.read().decode()[-500:]}"
                                   if proc.stderr else "uvicorn exited") from None
            time.sleep(0.2)
    proc.kill()
    raise TimeoutError("the server did not start within 60 s")


def _wrk(port: int, seconds: int, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-H", "Authorization: Bearer alice-token",
         f"http://127.0.0.1:{port}/documents/ticket-1"],
        capture_output=True, text=True, check=True).stdout
    if re.search(r"Non-2xx or 3xx responses", out):
        raise RuntimeError(f"wrk saw errors:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return float(match.group(1))


def measure(seconds: int, rounds: int, connections: int) -> dict[str, list[float]]:
    servers = {"authorized": _serve("authorized_app", _free_port()),
               "unauthorized": _serve("plain_app", _free_port())}
    ports = {name: int(proc.args[proc.args.index("--port") + 1])  # type: ignore[index,union-attr]
             for name, proc in servers.items()}
    results: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for name in servers:  # warm-up
            _wrk(ports[name], 2, connections)
        for _ in range(rounds):
            for name in servers:
                results[name].append(_wrk(ports[name], seconds, connections))
    finally:
        for proc in servers.values():
            proc.terminate()
            proc.wait(timeout=10)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk); skipping the FastAPI load test")
        return 0
    results = measure(args.seconds, args.rounds, args.connections)
    med = {name: statistics.median(v) for name, v in results.items()}
    ratio = med["authorized"] / med["unauthorized"]
    print("| server | requests/s (median) | rounds |")
    print("|---|---:|---|")
    for name, values in results.items():
        print(f"| {name} | {med[name]:,.0f} | {', '.join(f'{v:,.0f}' for v in values)} |")
    print()
    print(f"- authorized / unauthorized: {ratio:.3f} ({(1 - ratio) * 100:.1f} % slower); "
          f"target within 10 %: {'met' if ratio >= 0.9 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
