"""Socket.IO's requests handed straight to its server, not through Engine.IO's WSGI app.

Flask-SocketIO puts python-engineio's ``WSGIApp`` in front of Flask.  Under
gunicorn that app defines a class on every request, a wrapper of gunicorn's
socket for eventlet's WebSocket, which gevent never uses.  A long-polling
client makes a request for every batch it receives, and making that class was
the largest single cost of a poll: 15% of the web worker's samples with 1,000
polling clients (``bench/delivery.py --transports polling --profile``).

``SocketIORoute`` does what the two wrappers do for a ``/socket.io/`` request,
through the server's public entry point: it names the Flask app in a copy of the
environ (Flask-SocketIO's handlers push its context from there; Socket.IO keeps
that copy for the connection's life and trims it, and gunicorn's own stays whole
for its access log) and calls ``handle_request``.  Any other path goes on to the
app it wraps, unchanged.

A long-polling response is one body that Engine.IO has encoded whole, but it
comes without a ``Content-Length``, so gunicorn sent it chunked: the headers, the
chunk and the closing chunk, three writes to the socket per poll.  The route
gives it its length, and gunicorn sends the headers and the body as they are.
"""

from __future__ import annotations


class SocketIORoute:
    def __init__(self, wsgi_app, server, flask_app, path: str = "/socket.io/"):
        self.wsgi_app = wsgi_app
        self.server = server
        self.flask_app = flask_app
        self.path = path

    def __call__(self, environ, start_response):
        if not environ.get("PATH_INFO", "").startswith(self.path):
            return self.wsgi_app(environ, start_response)
        environ = {**environ, "flask.app": self.flask_app}
        if "HTTP_UPGRADE" in environ:  # a WebSocket answers on the connection itself
            return self.server.handle_request(environ, start_response)
        return self._with_length(environ, start_response)

    def _with_length(self, environ, start_response):
        started = []

        def hold(status, headers, exc_info=None):
            started[:] = [status, headers, exc_info]
            return self._no_write

        body = self.server.handle_request(environ, hold)
        if not started:  # nothing was answered over HTTP (a WebSocket without Upgrade)
            return body
        status, headers, exc_info = started
        if isinstance(body, list) and not any(
            name.lower() == "content-length" for name, _ in headers
        ):
            headers = [*headers, ("Content-Length", str(sum(map(len, body))))]
        start_response(status, headers, exc_info)
        return body

    @staticmethod
    def _no_write(data):
        raise RuntimeError("Engine.IO returns its body; a write() before it is not expected")
