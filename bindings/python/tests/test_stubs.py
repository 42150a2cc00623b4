"""The typing files ship with the package and describe the extension that was built."""

from __future__ import annotations

import ast
import pathlib

import sluice
from sluice import _sluice

PKG = pathlib.Path(sluice.__file__).parent


CLASSES = ("Engine", "CancelToken")


def _stub_names() -> tuple[set[str], dict[str, set[str]]]:
    tree = ast.parse((PKG / "_sluice.pyi").read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    assert set(classes) == set(CLASSES)
    methods = {
        name: {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
        for name, cls in classes.items()
    }
    return functions, methods


def test_marker_and_stubs_ship_with_the_package() -> None:
    assert (PKG / "py.typed").exists()
    assert (PKG / "_sluice.pyi").exists()


def test_extension_stub_matches_the_module() -> None:
    functions, methods = _stub_names()
    public = {n for n in dir(_sluice) if not n.startswith("_")} - set(CLASSES)
    assert functions == public
    for name in CLASSES:
        built = {n for n in vars(getattr(_sluice, name)) if not n.startswith("_")}
        assert methods[name] - {"__init__"} == built, name


def test_public_names_exported() -> None:
    for name in sluice.__all__:
        assert hasattr(sluice, name), name
