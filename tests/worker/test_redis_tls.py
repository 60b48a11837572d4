"""Redis with a password, over TLS (``rediss://``): a private redis-server started for the test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from worker_fixtures import write_spec

from trainyard.config import Settings
from trainyard.db import JobState, Store
from trainyard.errors import BrokerError
from trainyard.queue import check_broker, transport
from trainyard.scheduler import operations
from trainyard.worker.local import wait_until

PASSWORD = "tls-s3cret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """(port, CA file) of a TLS-only redis-server with a password and a certificate from a test CA."""
    if not (shutil.which("redis-server") and shutil.which("openssl")):
        pytest.skip("redis-server and openssl are needed to start a TLS Redis")
    certs = tmp_path / "certs"
    certs.mkdir()
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=trainyard-test-ca",
        cwd=certs,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
        cwd=certs,
    )
    (certs / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        cwd=certs,
    )
    port = _free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            "server.pem",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.pem",
            "--tls-auth-clients",
            "no",
            "--requirepass",
            PASSWORD,
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        cwd=certs,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and server.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        if server.poll() is not None:
            pytest.skip("this redis-server has no TLS support")
        yield port, certs / "ca.pem"
    finally:
        server.terminate()
        server.wait(10)


def _settings(home: Path, url: str) -> Settings:
    return Settings.from_env({"TRAINYARD_HOME": str(home), "TRAINYARD_BROKER_URL": url})


def test_rediss_verifies_the_server_and_hides_the_password(tls_redis: tuple[int, Path], home: Path) -> None:
    port, ca = tls_redis
    check_broker(_settings(home, f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={ca}"))
    # Without the test CA, the self-signed chain is refused: certificates are verified by default.
    with pytest.raises(BrokerError, match="CERTIFICATE_VERIFY_FAILED") as unverified:
        check_broker(_settings(home, f"rediss://:{PASSWORD}@127.0.0.1:{port}/0"))
    assert PASSWORD not in str(unverified.value)
    with pytest.raises(BrokerError) as wrong:
        check_broker(_settings(home, f"rediss://:wrong-pw@127.0.0.1:{port}/0?ssl_ca_certs={ca}"))
    assert f"rediss://:***@127.0.0.1:{port}/0" in str(wrong.value) and "wrong-pw" not in str(wrong.value)


@pytest.mark.slow
def test_a_worker_trains_over_tls_with_a_password(
    tls_redis: tuple[int, Path], tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, start_worker: Any
) -> None:
    port, ca = tls_redis
    monkeypatch.setenv("TRAINYARD_BROKER_URL", f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={ca}")
    settings = Settings.from_env()
    store = Store.open(settings.db_url)
    (job,) = operations.submit([write_spec(tmp_path, "tls", epochs=2)], settings=settings)
    assert transport.queue_size(settings) == 1
    worker = start_worker("tls", {**env, "TRAINYARD_BROKER_URL": settings.broker_url})
    assert wait_until(lambda: store.get_job(job.id).state.is_finished, 240), worker.log_tail(60)
    assert store.get_job(job.id).state is JobState.SUCCEEDED
    assert PASSWORD not in worker.log_tail(400)
