"""Package boundaries, read from the source: the arrows point one way, lsm <- hw <- calibration.

Every ``.py`` file of a package is parsed with :mod:`ast` and every import is collected, wherever
it is written: at the top, inside a function (a lazy import), ``importlib.import_module("...")``
and ``__import__("...")`` with a literal name. Importing the modules and looking at
``sys.modules`` would miss the lazy ones, which run only when their function does.

The command-line package of lsm (``lsm/cli.py``, or the ``lsm/cli/`` package) is the one place
allowed to reach into the lab packages: ``lsm hw ...`` and ``lsm emulator`` drive them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def module_name(path: Path, root: Path) -> str:
    """Dotted name of the module in ``path`` (relative to the folder that holds the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(module: str | None, level: int, here: str, is_package: bool) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in module ``here``."""
    if level == 0:
        return module or ""
    base = here.split(".") if is_package else here.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, module] if module else base)


def _import_call_target(node: ast.Call) -> str | None:
    """``importlib.import_module("x")``, ``import_module("x")`` or ``__import__("x")``: the
    literal ``x`` (None for any other call, or a name that is not a literal)."""
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    return None


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """Every module that the file at ``path`` imports, as ``(line, absolute dotted name)``.

    ``from a import b`` yields ``a`` (``b`` may be a name in ``a`` or the submodule ``a.b``: the
    top-level package, which is what a boundary is about, is ``a``'s either way).
    """
    here = module_name(path, root)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, _absolute(node.module, node.level, here, is_package)))
        elif isinstance(node, ast.Call):
            target = _import_call_target(node)
            if target is not None:
                if target.startswith("."):  # import_module(".x", package=...): relative
                    dots = len(target) - len(target.lstrip("."))
                    target = _absolute(target[dots:] or None, dots, here, is_package)
                found.append((node.lineno, target))
    return sorted(found)


def boundary_violations(package_dir: Path, forbidden: tuple[str, ...],
                        allowed=lambda rel: False) -> list[str]:
    """``"<file>:<line>: imports <module>"`` for every import of a ``forbidden`` top-level package
    in the ``.py`` files under ``package_dir`` (except the files ``allowed(relative path)``
    accepts)."""
    root = package_dir.parent
    out = []
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if allowed(rel):
            continue
        for line, name in imported_modules(path, root):
            if name.split(".")[0] in forbidden:
                out.append(f"{rel}:{line}: imports {name}")
    return out


def is_lsm_cli(rel: str) -> bool:
    return rel == "lsm/cli.py" or rel.startswith("lsm/cli/")


# ---------------------------------------------------------------- the real tree
def test_lsm_imports_neither_hw_nor_calibration_outside_its_cli():
    files = sorted((ROOT / "lsm").rglob("*.py"))
    assert len(files) > 20 and ROOT / "lsm" / "reservoir.py" in files  # the walk found the tree
    bad = boundary_violations(ROOT / "lsm", ("hw", "calibration"), allowed=is_lsm_cli)
    assert not bad, "lsm must not depend on the lab packages:\n" + "\n".join(bad)


def test_hw_never_imports_calibration():
    assert (ROOT / "hw" / "macro.py").exists()
    bad = boundary_violations(ROOT / "hw", ("calibration",))
    assert not bad, "hw must not depend on calibration:\n" + "\n".join(bad)


def test_the_lsm_cli_is_seen_and_exempt():
    """The exemption is used (the CLI does import hw) and is no wider than the CLI."""
    cli = [p for p in (ROOT / "lsm").rglob("*.py")
           if is_lsm_cli(p.relative_to(ROOT).as_posix())]
    assert cli, "no lsm/cli.py nor lsm/cli/: update is_lsm_cli"
    assert any(name.split(".")[0] == "hw" for p in cli for _, name in imported_modules(p, ROOT))
    assert not is_lsm_cli("lsm/client.py") and not is_lsm_cli("lsm/data/cli.py")


# ---------------------------------------------------------------- the checker can fail
@pytest.fixture
def fake_lsm(tmp_path):
    pkg = tmp_path / "lsm"
    (pkg / "sub").mkdir(parents=True)
    for f in ("__init__.py", "sub/__init__.py", "clean.py"):
        (pkg / f).write_text("import numpy as np\nfrom lsm.config import LSMConfig\n")
    return pkg


@pytest.mark.parametrize("source, line, name", [
    ("import hw\n", 1, "hw"),
    ("import os, hw.macro as m\n", 1, "hw.macro"),
    ("from hw.journal import Journal\n", 1, "hw.journal"),
    ("from calibration import fit\n", 1, "calibration"),
    ("x = 1\n\ndef f():\n    from hw import Macro  # lazy\n    return Macro\n", 4, "hw"),
    ("class C:\n    def m(self):\n        import calibration.sweep\n", 3, "calibration.sweep"),
    ("import importlib\nmod = importlib.import_module('hw.emulator')\n", 2, "hw.emulator"),
    ("from importlib import import_module\n\n\nm = import_module('calibration')\n", 4,
     "calibration"),
    ("m = __import__('hw')\n", 1, "hw"),
    ("try:\n    pass\nexcept ImportError:\n    if True:\n        import hw\n", 5, "hw"),
])
def test_every_kind_of_import_of_a_lab_package_is_reported_with_file_and_line(
        fake_lsm, source, line, name):
    (fake_lsm / "sub" / "bad.py").write_text(source)
    bad = boundary_violations(fake_lsm, ("hw", "calibration"), allowed=is_lsm_cli)
    assert bad == [f"lsm/sub/bad.py:{line}: imports {name}"]


def test_clean_files_the_cli_and_look_alike_names_are_not_reported(fake_lsm):
    (fake_lsm / "cli.py").write_text("from hw import Macro\n")
    (fake_lsm / "cli").mkdir()
    (fake_lsm / "cli" / "lab.py").write_text("def f():\n    import hw.jobs\n")
    (fake_lsm / "names.py").write_text(
        "import hwloc\nfrom lsm import hw\nfrom . import calibration\n"
        "import importlib\nname = 'hw'\nm = importlib.import_module(name)\n"
        "# import hw\ns = 'import hw'\n")
    assert boundary_violations(fake_lsm, ("hw", "calibration"), allowed=is_lsm_cli) == []
    # without the exemption, both CLI files are reported
    assert sorted(boundary_violations(fake_lsm, ("hw",))) == [
        "lsm/cli.py:1: imports hw", "lsm/cli/lab.py:2: imports hw.jobs"]


def test_relative_imports_are_resolved(tmp_path):
    pkg = tmp_path / "hw"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import macro\n")
    (pkg / "sub" / "__init__.py").write_text("from .. import x\n")
    (pkg / "sub" / "deep.py").write_text(
        "from ..macro import M\nfrom . import y\n"
        "import importlib\nimportlib.import_module('..jobs', package='hw.sub')\n")
    root = tmp_path
    assert [n for _, n in imported_modules(pkg / "__init__.py", root)] == ["hw"]
    assert [n for _, n in imported_modules(pkg / "sub" / "__init__.py", root)] == ["hw"]
    assert imported_modules(pkg / "sub" / "deep.py", root) == [
        (1, "hw.macro"), (2, "hw.sub"), (3, "importlib"), (4, "hw.jobs")]
    # a relative import stays inside its package: never a violation of another package
    assert boundary_violations(pkg, ("calibration",)) == []
    assert boundary_violations(pkg, ("hw",)) == [
        "hw/__init__.py:1: imports hw", "hw/sub/__init__.py:1: imports hw",
        "hw/sub/deep.py:1: imports hw.macro", "hw/sub/deep.py:2: imports hw.sub",
        "hw/sub/deep.py:4: imports hw.jobs"]


# ---------------------------------------------------------------------- complete __all__
def public_names_missing_from_all(path: Path) -> list[str]:
    """Public top-level functions, classes and UPPER_CASE constants of a module that its
    ``__all__`` leaves out (every module that defines public names must have one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    public = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
              and not n.name.startswith("_")]
    public += [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
               if isinstance(t, ast.Name) and t.id.isupper() and not t.id.startswith("_")]
    declared = None
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                             for t in n.targets):
            declared = {e.value for e in n.value.elts}
    if declared is None:
        return public
    return [name for name in public if name not in declared]


@pytest.mark.parametrize("package", ["lsm", "hw"])
def test_every_public_name_is_in_all(package):
    missing = {str(p.relative_to(ROOT)): names
               for p in sorted((ROOT / package).rglob("*.py")) if p.name != "__main__.py"
               for names in [public_names_missing_from_all(p)] if names}
    assert not missing, missing


def test_the_all_check_sees_a_missing_name(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text('__all__ = ["f"]\nLIMIT = 3\n\ndef f():\n    pass\n\nclass C:\n    pass\n'
                   "\ndef _private():\n    pass\n")
    assert public_names_missing_from_all(mod) == ["C", "LIMIT"]
    mod.write_text("def g():\n    pass\n")
    assert public_names_missing_from_all(mod) == ["g"]
