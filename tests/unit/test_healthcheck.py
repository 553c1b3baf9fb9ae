"""imagepipe.healthcheck against a real HTTP server on the loopback."""
import http.server
import subprocess
import sys
import threading

import pytest

from harness.processes import free_port
from imagepipe.healthcheck import check, main
from tests.helpers import REPO_ROOT


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:{}".format(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def test_healthy_unhealthy_and_silent_endpoints(server):
    assert check(server + "/health") is None
    assert check(server + "/broken") == "answered 503"
    assert check("http://127.0.0.1:{}/health".format(free_port()), timeout=2).startswith("no answer")
    assert check("not a url").startswith("no answer")


def test_exit_status_and_url_from_the_environment(server, monkeypatch, capsys):
    assert main([server + "/health"]) == 0
    assert main([server + "/broken"]) == 1
    assert "unhealthy: {}/broken answered 503".format(server) in capsys.readouterr().err
    monkeypatch.setenv("HEALTHCHECK_URL", server + "/health")
    assert main([]) == 0


def test_runs_as_the_module_the_image_calls(server):
    probe = [sys.executable, "-m", "imagepipe.healthcheck"]
    assert subprocess.run(probe + [server + "/health"], cwd=REPO_ROOT, timeout=30).returncode == 0
    assert subprocess.run(probe + [server + "/broken"], cwd=REPO_ROOT, capture_output=True,
                          timeout=30).returncode == 1
