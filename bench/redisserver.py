"""A throwaway redis-server on a free loopback port, plain or TLS with a self-signed certificate."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import redis.asyncio as redis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """Start, stop and restart a real redis-server on the same port."""

    def __init__(self, tls: bool = False, durable: bool = False) -> None:
        self.port = free_port()
        self.tls = tls
        self.durable = durable  # every write fsynced to the append-only file: a restart keeps everything
        self.directory = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    async def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (Debian package redis-server)"
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        arguments = [binary, "--bind", "127.0.0.1", "--save", "", *persistence, "--dir", str(self.directory)]
        if self.tls:
            self._make_certificate()
            arguments += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            arguments += ["--tls-cert-file", "cert.pem", "--tls-key-file", "key.pem", "--tls-ca-cert-file", "cert.pem"]
        else:
            arguments += ["--port", str(self.port)]
        self._process = subprocess.Popen(arguments, cwd=self.directory, stdout=subprocess.DEVNULL)
        client = self.client()
        try:
            for _ in range(200):
                try:
                    await client.ping()
                    return self
                except (OSError, redis.RedisError):
                    await asyncio.sleep(0.02)
            raise TimeoutError(f"redis-server did not answer on port {self.port}")
        finally:
            await client.aclose()

    def client(self) -> redis.Redis:
        if self.tls:
            return redis.Redis.from_url(self.url, ssl_cert_reqs="none", ssl_check_hostname=False, decode_responses=True)
        return redis.Redis.from_url(self.url, decode_responses=True)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None

    def _make_certificate(self) -> None:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
            ],
            cwd=self.directory,
            check=True,
            capture_output=True,
        )
