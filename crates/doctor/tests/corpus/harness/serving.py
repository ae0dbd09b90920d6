"""Serving a case's web services: FastAPI under uvicorn on sockets the case's driver bound, and
WSGI apps on a threading wsgiref server.

Shared by the suites whose services are separate processes: the driver binds a free port with
`bound_socket()` and hands the listening socket to the service process, which calls `serve()`.
"""

import asyncio
import os
import socket
import socketserver
import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer


def bound_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def serve(app, fd, tp=None):
    """Serves `app` with uvicorn on the listening socket `fd` (bound by the case's driver, so that
    nothing else on the machine can take the port between the driver choosing it and this process
    serving) until SIGINT; then flushes `tp` (if the process traces) and exits at once."""
    import uvicorn

    sock = socket.socket(fileno=fd)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    try:
        asyncio.run(server.serve(sockets=[sock]))
    except KeyboardInterrupt:
        pass
    if tp is not None:
        tp.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """A WSGI server (wsgiref) with a thread per request, for the suites whose services are WSGI
    apps under OpenTelemetry's WSGI middleware."""

    daemon_threads = False  # server_close() joins the request threads, so their spans have ended


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass
