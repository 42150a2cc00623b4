#!/usr/bin/env python3
"""Generates the protobuf module of sluice_client from the repository's proto/ (never committed).

    python gen_proto.py                 # into src/sluice_client/_proto/ (a source checkout)
    python gen_proto.py --out DIR       # into DIR/sluice_client/_proto/ (the package build)

The package build (hatch_build.py) calls generate() with a temporary directory; run_tests.sh
calls this script so tests can import the package from src/. Needs grpcio-tools, whose protoc
must match the protobuf runtime the package depends on (pyproject.toml pins both).

The .proto is compiled with `-I <proto root>` so its descriptor keeps its canonical name
`sluice/v1/sluice.proto` (identical to what any other stub of the contract registers, so both
can live in one process), while the module lands in the private subpackage
`sluice_client._proto.sluice.v1` and never collides with the in-process `sluice` package. Only
message code (`sluice_pb2.py` + `.pyi`) is generated: the client builds its calls from the
service descriptor, so no `_pb2_grpc` module (and its absolute `from sluice.v1 import` line) is
needed.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
PROTO_FILE = pathlib.Path("sluice") / "v1" / "sluice.proto"


def find_proto_root(package_root: pathlib.Path = HERE) -> pathlib.Path:
    """The directory holding sluice/v1/sluice.proto: $SLUICE_PROTO, the copy an sdist carries
    (package_root/proto), or the repository's proto/ two levels up."""
    candidates = []
    if os.environ.get("SLUICE_PROTO"):
        candidates.append(pathlib.Path(os.environ["SLUICE_PROTO"]))
    candidates += [package_root / "proto", package_root.parent.parent / "proto"]
    for c in candidates:
        if (c / PROTO_FILE).is_file():
            return c.resolve()
    raise FileNotFoundError(
        f"{PROTO_FILE} not found in any of {[str(c) for c in candidates]}: build sluice_client "
        "from a checkout of the repository, or set SLUICE_PROTO to its proto/ directory")


def generate(out_root: pathlib.Path, proto_root: pathlib.Path | None = None) -> pathlib.Path:
    """Writes out_root/sluice_client/_proto/ (with __init__.py files) and returns that directory.
    The directory is replaced atomically enough for a build: generated into a temporary sibling,
    then renamed over the old one."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    proto_root = proto_root or find_proto_root()
    target = out_root / "sluice_client" / "_proto"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="_proto-", dir=target.parent))
    try:
        include = pathlib.Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
        args = ["protoc", f"-I{proto_root}", f"-I{include}", f"--python_out={tmp}",
                f"--pyi_out={tmp}", str(proto_root / PROTO_FILE)]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto_root / PROTO_FILE}")
        header = '"""Generated from proto/ by gen_proto.py at build time; never edit."""\n'
        for d in (tmp, tmp / "sluice", tmp / "sluice" / "v1"):
            (d / "__init__.py").write_text(header)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=HERE / "src",
                    help="root to write sluice_client/_proto/ under (default: src/)")
    ap.add_argument("--proto", type=pathlib.Path, default=None, help="the proto/ directory")
    ns = ap.parse_args(argv)
    print(f"generated {generate(ns.out, ns.proto)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
