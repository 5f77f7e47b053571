"""The gRPC entry point (grpc.aio, package tolstoy.v1).

The contract lives in protos/tolstoy/v1/*.proto (linted by buf, buf.yaml at the root); its Python
code is generated into ``entrypoints.grpc.gen`` by ``make protos`` (scripts/protos.py) and
committed, and ``make lint`` fails when it no longer matches the protos. Import it as
``from entrypoints.grpc.gen.tolstoy.v1 import flow_service_pb2, flow_service_pb2_grpc``. Nothing
outside ``entrypoints`` may import it (import-linter contract in pyproject.toml).
"""
