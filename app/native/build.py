"""Hatch build hook: compiles the fast paths (``_fast.c``) at install time.

Theory of operation: ``pip install`` (editable or not) runs this hook. It compiles
``_fast.c`` with the C compiler and flags of the interpreter being installed into
(``sysconfig``), into ``app/native/_fast<EXT_SUFFIX>``. A wheel that holds it is tagged for
this platform. When there is no compiler (or no ``Python.h``), the install goes on with a
warning and socketlab runs its pure-Python code, which every fast path falls back to
(:mod:`app.native`).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("app/native/_fast.c")


def compile_fast(root: Path) -> Path:
    """Compile ``_fast.c`` under ``root``; returns the module's path.

    Raises:
        subprocess.CalledProcessError: The compiler refused it.
        OSError: There is no compiler.
    """
    source = root / SOURCE
    target = source.with_name("_fast" + sysconfig.get_config_var("EXT_SUFFIX"))
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
        try:
            target = compile_fast(Path(self.root))
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"socketlab: fast paths not compiled ({exc}); using pure Python", file=sys.stderr)
            return
        if version != "editable":
            # The module is git-ignored, so the wheel is told of it, and tagged for this
            # platform.
            build_data["force_include"][str(target)] = str(target.relative_to(self.root))
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
