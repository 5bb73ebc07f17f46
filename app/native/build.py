"""Hatch build hook: compiles the fast paths (``app/native/_*.c``) at install time.

Theory of operation: ``pip install`` (editable or not) runs this hook. It compiles each
``app/native/_<name>.c`` with the C compiler and flags of the interpreter being installed
into (``sysconfig``), into the extension module ``app/native/_<name><EXT_SUFFIX>``. A wheel
that holds them is tagged for this platform. When there is no compiler (or no
``Python.h``), the install goes on with a warning and socketlab runs its pure-Python code,
which every fast path falls back to (:mod:`app.native`).

Run as a script (``python app/native/build.py``) it compiles them in place, without an
install: for whoever edits a source.
"""

from __future__ import annotations

import shlex
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script (below), outside an install
    BuildHookInterface = object

SOURCES = "app/native/_*.c"


def compile_module(source: Path) -> Path:
    """Compile one module's source; returns the module's path.

    Raises:
        subprocess.CalledProcessError: The compiler refused it.
        OSError: There is no compiler.
    """
    target = source.with_name(source.stem + sysconfig.get_config_var("EXT_SUFFIX"))
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    command = [
        *cc,
        "-O2",
        "-fPIC",
        "-shared",
        "-Wall",
        "-Werror",
        f"-I{sysconfig.get_paths()['include']}",
        str(source),
        "-o",
        str(target),
    ]
    subprocess.run(command, check=True)
    return target


class NativeBuildHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        for source in sorted(root.glob(SOURCES)):
            try:
                target = compile_module(source)
            except (OSError, subprocess.CalledProcessError) as exc:
                print(f"socketlab: {source.name} not compiled ({exc}); its Python twin runs")
                continue
            if version != "editable":
                # The module is git-ignored, so the wheel is told of it, and tagged for
                # this platform.
                build_data["force_include"][str(target)] = str(target.relative_to(root))
                build_data["pure_python"] = False
                build_data["infer_tag"] = True


if __name__ == "__main__":
    for path in sorted(Path(__file__).resolve().parents[2].glob(SOURCES)):
        print(compile_module(path))
