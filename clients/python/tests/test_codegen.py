"""The protobuf module is generated from proto/ (never committed) into a private subpackage,
keeps the descriptor's canonical name, and lives beside other stubs of the same contract."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

from harness import ROOT

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]


def test_generated_module_is_ignored_and_untracked() -> None:
    gen = PACKAGE_DIR / "src" / "sluice_client" / "_proto"
    assert (gen / "sluice" / "v1" / "sluice_pb2.py").exists()
    tracked = subprocess.run(["git", "ls-files", str(gen)], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    assert tracked == ""
    ignored = subprocess.run(["git", "check-ignore", "-q", str(gen / "x.py")], cwd=ROOT)
    assert ignored.returncode == 0


def test_generated_module_is_private_and_canonical() -> None:
    from sluice_client._pb import pb

    assert pb.__name__ == "sluice_client._proto.sluice.v1.sluice_pb2"
    assert pb.DESCRIPTOR.name == "sluice/v1/sluice.proto"
    assert pb.DESCRIPTOR.package == "sluice.v1"


def test_regeneration_matches_the_proto(tmp_path: pathlib.Path) -> None:
    sys.path.insert(0, str(PACKAGE_DIR))
    try:
        import gen_proto
    finally:
        sys.path.pop(0)
    out = gen_proto.generate(tmp_path)
    here = PACKAGE_DIR / "src" / "sluice_client" / "_proto" / "sluice" / "v1"
    for name in ("sluice_pb2.py", "sluice_pb2.pyi"):
        assert (out / "sluice" / "v1" / name).read_text() == (here / name).read_text(), name


def test_lives_beside_other_stubs_of_the_contract(tmp_path: pathlib.Path) -> None:
    """A process that also generated `sluice.v1` stubs itself (as tests/server/python does)
    imports both without a descriptor-pool conflict."""
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
                    f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}",
                    str(ROOT / "proto" / "sluice" / "v1" / "sluice.proto")], check=True)
    code = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(tmp_path)!r}, {str(PACKAGE_DIR / 'src')!r}]
        from sluice.v1 import sluice_pb2, sluice_pb2_grpc
        import sluice_client
        from sluice_client._pb import pb
        assert pb.Task.DESCRIPTOR.full_name == sluice_pb2.Task.DESCRIPTOR.full_name
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "ok" in out.stdout, out.stdout + out.stderr
