"""A local S3-compatible server (nanio) for `make run` and the tests.

nanio verifies SigV4 signatures and presigned expiry, so a link that downloads
from it is a link that really works. Path style only."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def stop_process_group(process: subprocess.Popen, *, timeout: float = 10.0) -> None:
    """SIGTERM a child started with start_new_session=True, with its whole group;
    SIGKILL the group if it is still there after `timeout` seconds."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        process.wait()
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalS3:
    def __init__(self, data_dir: Path, *, port: int | None = None, access_key: str = "portal-dev",
                 secret_key: str = "portal-dev-secret-key", region: str = "us-east-1") -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 20.0, log_file=None) -> "LocalS3":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, NANIO_ACCESS_KEY=self.access_key, NANIO_SECRET_KEY=self.secret_key)
        nanio = Path(sys.executable).with_name("nanio")
        command = [str(nanio) if nanio.exists() else "nanio", "serve", "--data-dir", str(self.data_dir),
                   "--host", "127.0.0.1", "--port", str(self.port), "--region", self.region,
                   "--no-access-log", "--log-level", "warning"]
        self.process = subprocess.Popen(command, env=env, stdout=log_file or subprocess.DEVNULL,
                                        stderr=log_file or subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nanio exited with code {self.process.returncode}")
            try:
                urllib.request.urlopen(self.endpoint_url + "/", timeout=1)
                return self
            except urllib.error.HTTPError:
                return self  # it answers (403 without a signature): it is up
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nanio did not start on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.process:
            stop_process_group(self.process, timeout=5)
        self.process = None

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def aws_env(self) -> dict[str, str]:
        """The environment the portal's AWS credential chain reads."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region}
