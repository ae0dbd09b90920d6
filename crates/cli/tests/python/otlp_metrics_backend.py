"""A real OTLP/HTTP metrics receiver standing in for a team's metrics backend.

Decodes each `POST /v1/metrics` body with the official OpenTelemetry Python
protobuf package and prints, per data point, one JSON line on stdout:
{"service", "metric", "attributes", "value", "monotonic"}. Prints "ready
PORT" first.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        request = metrics_service_pb2.ExportMetricsServiceRequest()
        request.ParseFromString(body)
        for rm in request.resource_metrics:
            service = next((a.value.string_value for a in rm.resource.attributes if a.key == "service.name"), "")
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    data = getattr(m, kind)
                    for p in data.data_points:
                        value = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                        print(
                            json.dumps(
                                {
                                    "service": service,
                                    "metric": m.name,
                                    "attributes": {a.key: a.value.string_value for a in p.attributes},
                                    "value": value,
                                    "monotonic": kind == "sum" and data.is_monotonic,
                                }
                            ),
                            flush=True,
                        )
        reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
print(f"ready {server.server_address[1]}", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
