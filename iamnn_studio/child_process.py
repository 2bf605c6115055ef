"""The environment of the studio's own child processes (memory sizing, exports): no Qt, no torch."""
from __future__ import annotations

import os
from pathlib import Path


def package_environment(**overrides: str) -> dict[str, str]:
    """This process's environment (the plugin folders too, so a child loads the same plugins), with this
    copy of the package first on the path: an installed one elsewhere must not answer for it.
    ``overrides`` are set where the environment does not already set them."""
    import iamnn_studio

    root = str(Path(iamnn_studio.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    for name, value in overrides.items():
        env.setdefault(name, value)
    return env
