"""Hatchling build hook: generates sluice_client/_proto/ from proto/ into every wheel.

The generated module is never committed. For a wheel (regular or editable) the hook runs
gen_proto.generate() with grpcio-tools (a build requirement in pyproject.toml, pinned to the
protobuf runtime the package depends on) and adds the result to the wheel with force_include.
An editable install generates into src/ instead, so the source tree imports it.
"""

from __future__ import annotations

import importlib.util
import pathlib
import shutil
import tempfile
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def _gen_module(root: pathlib.Path) -> Any:
    spec = importlib.util.spec_from_file_location("sluice_gen_proto", root / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ProtoBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return  # the sdist carries proto/ itself (see [tool.hatch.build.targets.sdist])
        root = pathlib.Path(self.root)
        gen = _gen_module(root)
        if version == "editable":
            gen.generate(root / "src")
            return
        self._tmp = pathlib.Path(tempfile.mkdtemp(prefix="sluice-client-build-"))
        target = gen.generate(self._tmp)
        for path in sorted(target.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(self._tmp)
                build_data["force_include"][str(path)] = str(rel)

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
