"""Regenerate the checked-in gRPC modules: ``python -m lepton_cdk.serve.proto`` (needs grpcio-tools)."""

from __future__ import annotations

from . import PROTO, generate

if __name__ == "__main__":
    for path in generate(PROTO.parent):
        print(f"wrote {path}")
