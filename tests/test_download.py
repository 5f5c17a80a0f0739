"""scripts/_common.sh's download(): an interrupted download resumes from its
.part file, an unreachable server is one plain error line, a broken gzip is
named. A local HTTP server with byte ranges stands in for the real mirrors."""
import gzip
import http.server
import os
import re
import shutil
import socket
import subprocess
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAYLOAD = gzip.compress(os.urandom(200_000), mtime=0)
pytestmark = pytest.mark.skipif(not (shutil.which("curl") or shutil.which("wget")),
                                reason="download() needs curl or wget")


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /data.gz, honouring ``Range: bytes=N-``."""
    served = []

    def do_GET(self):
        if self.path != "/data.gz":
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.served.append(start)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _download(url, dest):
    script = f'source "{ROOT}/scripts/_common.sh"; download "$1" "$2"'
    return subprocess.run(["bash", "-c", script, "download", url, str(dest)],
                          capture_output=True, text=True, timeout=120)


def test_an_interrupted_download_resumes(server, tmp_path):
    dest = tmp_path / "data.gz"
    (tmp_path / "data.gz.part").write_bytes(PAYLOAD[:70_000])      # what a cut run left
    RangeHandler.served.clear()
    done = _download(f"{server}/data.gz", dest)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout and RangeHandler.served == [70_000]
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "data.gz.part").exists()


def test_an_unreachable_server_is_one_plain_line(tmp_path):
    with socket.socket() as sock:                   # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = _download(f"http://127.0.0.1:{port}/data.gz", tmp_path / "data.gz")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "unreachable" in lines[0]


def test_a_missing_file_and_a_broken_gzip_are_named(server, tmp_path):
    done = _download(f"{server}/nope.gz", tmp_path / "nope.gz")
    assert done.returncode == 1 and "refused the request" in done.stderr
    (tmp_path / "data.gz.part").write_bytes(b"not gzip at all")
    done = _download(f"{server}/data.gz", tmp_path / "data.gz")
    assert done.returncode == 1 and "not a valid gzip file" in done.stderr
