"""The benchmark image's nginx configuration and wrk loop (images/bench), run with the
Debian nginx and wrk the image installs, as the unprivileged image runs them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import WORKSPACE

BENCH = WORKSPACE / "images" / "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nginx():
    """nginx with the image's configuration, as UID 65532 like the image (through setpriv
    when the tests run as root), on a free port instead of 8080."""
    nginx_bin = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not nginx_bin:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="fitsched-bench-") as tmp:
        state = Path(tmp)
        site = state / "site"
        site.mkdir()
        shutil.copy(BENCH / "index.html", site / "index.html")
        conf = (BENCH / "nginx.conf").read_text()
        assert "listen 8080 default_server;" in conf and "root /usr/share/fitsched-bench;" in conf
        conf = conf.replace("/tmp/", f"{state}/")
        conf = conf.replace("listen 8080", f"listen 127.0.0.1:{port}").replace("/usr/share/fitsched-bench", str(site))
        (state / "nginx.conf").write_text(conf)
        prefix: list[str] = []
        if os.geteuid() == 0:
            for p in [state, *state.rglob("*")]:
                os.chown(p, 65532, 65532)
            prefix = ["setpriv", "--reuid=65532", "--regid=65532", "--clear-groups"]
        cmd = [*prefix, nginx_bin, "-e", "stderr", "-c", str(state / "nginx.conf")]
        test = subprocess.run([*cmd[:-2], "-t", "-c", str(state / "nginx.conf")], capture_output=True, text=True)
        assert test.returncode == 0, test.stderr
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        try:
            yield f"http://127.0.0.1:{port}/"
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
            assert "[emerg]" not in err and "[alert]" not in err, err


def test_wrk_loop_loads_the_local_nginx(nginx):
    if not shutil.which("wrk"):
        pytest.skip("wrk is not installed (apt-get install wrk)")
    env = dict(os.environ, WRK_URL=nginx, WRK_THREADS="1", WRK_CONNECTIONS="2", WRK_DURATION="1s", NODE_NAME="node-x")
    proc = subprocess.Popen(["sh", str(BENCH / "fitsched-bench-wrk")], env=env, stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Requests/sec:"):
                break
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    out = "".join(lines)
    assert "node=node-x threads=1 connections=2 duration=1s" in out, out
    assert "Latency Distribution" in out, out
    rps = float(next(line for line in lines if line.startswith("Requests/sec:")).split()[1])
    assert rps > 0, out
