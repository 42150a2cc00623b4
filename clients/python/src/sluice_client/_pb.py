"""The generated protobuf module of sluice.v1 (built from proto/, never committed)."""

from __future__ import annotations

try:
    from ._proto.sluice.v1 import sluice_pb2 as pb
except ImportError as e:  # a source checkout that was never generated
    raise ImportError(
        "sluice_client's generated protobuf module is missing: install the package "
        "(pip install ./clients/python) or run `python clients/python/gen_proto.py` in a "
        "checkout") from e

__all__ = ["pb"]
