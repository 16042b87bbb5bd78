"""What the benchmarks' proxies in front of moto share: a handler that passes each request on and
sends the answer back, and a threaded server for it. Each bench subclasses `Handler` and decides in
`forward` what to do around `pass_on` and `answer` (count, delay, refuse)."""
import http.server
import socketserver
import threading
import urllib.error
import urllib.request


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: with Nagle on, the body waits for the client's
    # delayed ACK (40 ms on Linux) on every reused connection — a delay no AWS endpoint adds.
    disable_nagle_algorithm = True
    upstream = ""

    def log_message(self, *args):
        pass

    def read_body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def pass_on(self, body):
        """Sends the request (with `body`) to moto: its status, headers and payload."""
        request = urllib.request.Request(self.upstream + self.path, data=body or None, method=self.command)
        for name, value in self.headers.items():
            if name.lower() not in ("connection", "content-length"):
                request.add_header(name, value)
        try:
            response = urllib.request.urlopen(request)
            return response.status, response.headers.items(), response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.items(), error.read()

    def answer(self, status, headers, payload):
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("connection", "content-length", "transfer-encoding", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    @staticmethod
    def action(body):
        """The AWS query action a request body names (IAM, STS), or None (S3)."""
        actions = [p[7:] for p in body.decode("utf-8", "replace").split("&") if p.startswith("Action=")]
        return actions[0] if actions else None

    def forward(self):
        raise NotImplementedError

    def do_GET(self):
        self.forward()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def serve(handler, upstream):
    """Starts a proxy to `upstream` with `handler` (a `Handler` subclass); returns its URL."""
    handler = type(handler.__name__, (handler,), {"upstream": upstream})
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"
