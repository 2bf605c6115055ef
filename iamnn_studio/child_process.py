"""The environment of the studio's own child processes (memory sizing, exports): no Qt, no torch."""
from __future__ import annotations

import os
import site
import sysconfig
from pathlib import Path


def package_environment(**overrides: str) -> dict[str, str]:
    """This process's environment (the plugin folders too, so a child loads the same plugins), with this
    copy of the package first on the path where the child would not find it by itself (a source tree, an
    editable install): an installed one elsewhere must not answer for it. An installed copy is left where
    it is: its site-packages folder first on the path would come before the standard library in the child.
    ``overrides`` are set where the environment does not already set them."""
    import iamnn_studio

    root = Path(iamnn_studio.__file__).resolve().parent.parent
    env = dict(os.environ)
    if not _found_by_the_child(root, env.get("PYTHONPATH", "")):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    for name, value in overrides.items():
        env.setdefault(name, value)
    return env


def _found_by_the_child(root: Path, pythonpath: str) -> bool:
    """Whether a child of this interpreter imports the package in ``root`` without help: ``root`` is one of
    its site-packages folders, and no folder on PYTHONPATH (searched before them) holds another copy."""
    if root not in {_resolved(folder) for folder in site_folders()}:
        return False
    earlier = [_resolved(entry) for entry in pythonpath.split(os.pathsep) if entry]
    return not any(folder != root and (folder / "iamnn_studio" / "__init__.py").is_file() for folder in earlier)


def site_folders() -> list[str]:
    """The site-packages folders a child of this interpreter searches (the user's own where it is enabled)."""
    folders = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
               *getattr(site, "getsitepackages", list)()]  # missing in an old virtualenv's site module
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    return folders


def _resolved(folder: str | Path) -> Path:
    try:
        return Path(folder).resolve()
    except (OSError, RuntimeError):  # a loop of links: never the package's folder
        return Path(folder)
