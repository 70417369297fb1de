"""An S3-compatible endpoint (moto's standalone server) for tests of S3 IO managers and uploads.

In-process mocking (``mock_aws``) only patches botocore inside the test process; Dagster runs steps in other
processes, and the production code path goes through a real HTTP endpoint (``S3Resource(endpoint_url=...)``).
``moto_server`` is a real HTTP server in its own process, so every process of a run sees the same buckets.
It keeps everything in memory: stopping it discards all objects.

The server binds a free port itself (``-p 0``) and the harness reads the port it got from its startup line
(werkzeug's ``* Running on http://127.0.0.1:PORT``), so no other process can take the port in between.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trace_summaries_harness.ports import wait_until

_MOTO_SERVER = Path(sys.executable).parent / "moto_server"
# moto accepts any credentials; fixed fake ones keep boto3 from looking for real ones on the machine.
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
REGION = "us-east-1"
# How werkzeug (under ``moto_server``) reports the address it bound, once it listens.
_BOUND = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class S3Endpoint:
    """A running moto server with one bucket; ``client`` is a boto3 S3 client bound to it."""

    endpoint_url: str
    bucket: str
    client: Any

    def env(self) -> dict[str, str]:
        """Environment for child processes (boto3 >= 1.28 honours ``AWS_ENDPOINT_URL_S3``)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }


def s3_client(endpoint_url: str) -> Any:
    import boto3  # a dagster-aws dependency; imported late to keep this module cheap to import

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


def _ready(endpoint_url: str) -> bool:
    with urllib.request.urlopen(f"{endpoint_url}/moto-api/", timeout=2) as response:
        return bool(response.status == 200)


@contextmanager
def moto_s3(bucket: str = "trace-summaries-test", timeout_s: float = 30.0) -> Iterator[S3Endpoint]:
    """``moto_server -H 127.0.0.1 -p 0`` with ``bucket`` created; terminated (or killed) on exit."""
    with tempfile.TemporaryFile() as log:

        def output() -> bytes:
            log.seek(0)
            return log.read()

        process = subprocess.Popen(
            [str(_MOTO_SERVER), "-H", "127.0.0.1", "-p", "0"], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_until(
                lambda: process.poll() is not None or _BOUND.search(output()) is not None,
                timeout_s=timeout_s,
                what="moto server's port",
                log=lambda: output().decode(errors="replace"),
            )
            bound = _BOUND.search(output())
            if process.poll() is not None or bound is None:
                raise RuntimeError(f"moto_server exited early:\n{output().decode(errors='replace')}")
            endpoint_url = f"http://127.0.0.1:{int(bound[1])}"
            wait_until(
                lambda: process.poll() is not None or _ready(endpoint_url),
                timeout_s=timeout_s,
                what=f"moto server on {endpoint_url}",
            )
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited early:\n{output().decode(errors='replace')}")
            client = s3_client(endpoint_url)
            client.create_bucket(Bucket=bucket)
            yield S3Endpoint(endpoint_url=endpoint_url, bucket=bucket, client=client)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


__all__ = ["S3Endpoint", "moto_s3", "s3_client"]
