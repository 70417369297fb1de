"""The OpenAI-compatible test server in its own process, with its in-flight counter readable from here.

``trace_summaries_harness.openai_server`` runs its HTTP server on threads of the calling process. In a
benchmark that would put the server's work (parsing each prompt, writing each answer) on the same GIL as
the client being measured, and charge it to the client. Here the server runs in a child process (as a real
endpoint would be elsewhere); JSON lines on its stdin/stdout carry ``reset`` and ``stats``, so the bench
still reads the server's own count of calls in flight.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class OpenAIServerProcess:
    """``with OpenAIServerProcess(latency_s=0.3) as server: server.base_url, server.stats()``."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> OpenAIServerProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-u", __file__, str(self.latency_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.base_url = self._read()["base_url"]
        return self

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            assert process.stdin is not None
            process.stdin.write('"stop"\n')
            process.stdin.flush()
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.terminate()
            process.wait(timeout=10)

    def _call(self, command: str) -> dict[str, Any]:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the OpenAI-compatible test server process exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def reset_stats(self) -> None:
        self._call("reset")

    def stats(self) -> dict[str, Any]:
        return self._call("stats")


def _serve(latency_s: float) -> None:
    sys.path.insert(0, str(REPO))
    from trace_summaries_harness.openai_server import OpenAICompatibleServer

    # Clean answers: these benchmarks measure throughput and pacing, comparable across runs; the varied
    # repertoire (refusals, cut-offs retried) is the tests' business.
    server = OpenAICompatibleServer(latency_s=latency_s, repertoire="clean").start()
    print(json.dumps({"base_url": server.base_url}), flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            if command == "reset":
                server.reset_stats()
                print("{}", flush=True)
            elif command == "stats":
                chat = server.chat_requests()
                stats = {
                    "max_in_flight": server.max_in_flight,
                    "chat_requests": len(chat),
                    "errors": sum(1 for request in chat if (request.status or 0) >= 400),
                }
                print(json.dumps(stats), flush=True)
            else:
                break
    finally:
        server.stop()


if __name__ == "__main__":
    _serve(float(sys.argv[1]))
