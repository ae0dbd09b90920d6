"""A real OTLP/gRPC receiver standing in for a team's backend.

Built on the gRPC stack and the generated OTLP service of the official
OpenTelemetry Python packages. Every export request it receives is appended
to --out as one line of hex-encoded protobuf, flushed at once, so a test can
read exactly what arrived. With --refuse N the first N requests are
answered UNAVAILABLE (a retryable code), as a backend that is starting up;
with --reject N the first N are answered INVALID_ARGUMENT (a refusal for
good, as a backend that does not take what it is sent), and not kept.
"""

import argparse
import signal
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, out, refuse, reject):
        self.out = out
        self.refuse = refuse
        self.reject = reject
        self.lock = threading.Lock()

    def Export(self, request, context):
        with self.lock:
            if self.refuse > 0:
                self.refuse -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "backend starting up")
            if self.reject > 0:
                self.reject -= 1
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "tenant quota exceeded")
            self.out.write(request.SerializeToString().hex() + "\n")
            self.out.flush()
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True, help="0: a free port, reported on stdout")
    parser.add_argument("--out", required=True)
    parser.add_argument("--refuse", type=int, default=0)
    parser.add_argument("--reject", type=int, default=0)
    args = parser.parse_args()
    out = open(args.out, "a", encoding="ascii")
    # gRPC shares a port with any other SO_REUSEPORT socket by default: off, so that a port taken
    # by another test's server is an error here, not two servers answering by turns.
    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.so_reuseport", 0)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(out, args.refuse, args.reject), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print("ready", port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
