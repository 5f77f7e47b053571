"""Generated from protos/ by scripts/protos.py with grpcio-tools 1.85.1: do not edit, run `make protos`."""
