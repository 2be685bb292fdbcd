"""tests/lib/traffic.py, which Molecule's rollouts count failed requests with: every answer
but a 200 is a failure, and so is a connection nobody accepts."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sim_process import free_port
from traffic import Traffic, chat


class Flaky(BaseHTTPRequestHandler):
    """200 to the right key, except every third request, which gets a 503."""
    count = 0

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        Flaky.count += 1
        ok = self.headers["Authorization"] == "Bearer k" and Flaky.count % 3
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_traffic_counts_every_answer_but_200_as_failed():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with Traffic(url, "k", threads=2) as traffic:
            while len(traffic.statuses) < 12:
                pass
        assert chat(url, "wrong") == 503
    finally:
        server.shutdown()
    assert set(traffic.statuses) == {200, 503}
    assert traffic.failed == [503] * traffic.statuses.count(503)


def test_a_refused_connection_is_a_failed_request():
    with Traffic(f"http://127.0.0.1:{free_port()}", "k", threads=1) as traffic:
        while not traffic.statuses:
            pass
    assert traffic.failed and traffic.failed[0] == "ConnectionRefusedError"
