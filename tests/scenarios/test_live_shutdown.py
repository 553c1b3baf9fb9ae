"""SIGTERM with live status streams open: the gateway still exits in time.

`nameko run` processes, as an operator runs them.  No imaging process runs,
so the uploaded images stay pending and their streams stay open until the
gateway is told to stop.
"""
import json

import pytest
import requests
from PIL import Image

from harness.processes import ServiceProcess, free_port, service_env, wait_for_http
from harness.rabbit import ScratchVhost
from tests.helpers import WebSession, upload
from tests.samples import encode

pytestmark = pytest.mark.slow


def jpeg(shade):
    return encode(Image.new("RGB", (64, 48), (shade, 40, 90)), "JPEG")


def test_sigterm_ends_open_streams_and_exits_within_10_seconds(tmp_path):
    with ScratchVhost("live-shutdown") as vhost:
        port = free_port()
        env = service_env(vhost.amqp_uri, tmp_path / "storage", port)
        processes = [ServiceProcess("services." + name, env, tmp_path) for name in ("storage", "gateway")]
        try:
            for process in processes:
                process.start()
            base_url = "http://127.0.0.1:{}".format(port)
            wait_for_http(base_url + "/images")  # answered by storage: the whole path is up
            streams = []
            for shade in range(3):
                with WebSession(base_url) as web:
                    image_id = upload(web, jpeg(shade), "a.jpg")
                stream = requests.get("{}/images/{}/events".format(base_url, image_id),
                                      stream=True, timeout=30)
                first = next(stream.iter_lines(delimiter=b"\n\n"))
                assert json.loads(first.split(b"data: ", 1)[1])["status"] == "pending"
                streams.append(stream)

            seconds = processes[1].terminate()
            assert seconds <= 10, seconds
            for stream in streams:
                # each stream was ended cleanly: nothing after its one event
                assert b"".join(stream.iter_content(chunk_size=None)) == b""
            log = processes[1].log_path.read_text()
            assert "status streams still open at shutdown" not in log
        finally:
            for process in processes:
                process.kill()
