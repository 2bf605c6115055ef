"""The environment of the studio's child processes: this copy of the package, found first, and the standard
library still before site-packages."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import iamnn_studio
from iamnn_studio import child_process
from iamnn_studio.child_process import package_environment


def child_path(env: dict[str, str], cwd: Path) -> list[str]:
    """``sys.path`` in a child of this interpreter started with ``env``."""
    done = subprocess.run([sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))"], env=env, cwd=cwd,
                          capture_output=True, text=True, check=True, timeout=60)
    return json.loads(done.stdout)


def installed_in(monkeypatch, folder: str | Path) -> None:
    """Make the package look installed in ``folder`` (a site-packages folder, for a normal install)."""
    monkeypatch.setattr(iamnn_studio, "__file__", str(Path(folder) / "iamnn_studio" / "__init__.py"))


def test_a_normal_install_leaves_the_standard_library_before_site_packages(monkeypatch, tmp_path):
    """Review: site-packages was put first on PYTHONPATH, so in the child it came before the standard library
    (a module there named like a standard one would have shadowed it)."""
    site_packages = sysconfig.get_paths()["purelib"]
    installed_in(monkeypatch, site_packages)
    monkeypatch.delenv("PYTHONPATH", raising=False)

    env = package_environment()

    assert "PYTHONPATH" not in env
    path = [os.path.realpath(entry) for entry in child_path(env, tmp_path)]
    standard_library = os.path.realpath(sysconfig.get_paths()["stdlib"])
    assert path.index(standard_library) < path.index(os.path.realpath(site_packages))


def test_a_normal_install_keeps_the_users_pythonpath_as_it_is(monkeypatch, tmp_path):
    monkeypatch.setattr(child_process, "site_folders", lambda: [str(tmp_path / "site-packages")])
    installed_in(monkeypatch, tmp_path / "site-packages")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "tools"))
    assert package_environment()["PYTHONPATH"] == str(tmp_path / "tools")


def test_an_installed_copy_is_put_first_when_another_copy_on_pythonpath_would_answer(monkeypatch, tmp_path):
    other = tmp_path / "checkout"
    (other / "iamnn_studio").mkdir(parents=True)
    (other / "iamnn_studio" / "__init__.py").write_text("")
    monkeypatch.setattr(child_process, "site_folders", lambda: [str(tmp_path / "site-packages")])
    installed_in(monkeypatch, tmp_path / "site-packages")
    monkeypatch.setenv("PYTHONPATH", str(other))
    assert package_environment()["PYTHONPATH"] == os.pathsep.join([str(tmp_path / "site-packages"), str(other)])


def test_a_source_tree_is_put_first_and_its_copy_answers_in_the_child(monkeypatch, tmp_path):
    """Run from a source tree (or an editable install of another tree), the child imports this copy."""
    root = Path(iamnn_studio.__file__).resolve().parent.parent
    monkeypatch.setattr(child_process, "site_folders", lambda: [str(tmp_path / "site-packages")])
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "tools"))

    env = package_environment()

    assert env["PYTHONPATH"] == os.pathsep.join([str(root), str(tmp_path / "tools")])
    found = subprocess.run([sys.executable, "-c", "import iamnn_studio; print(iamnn_studio.__file__)"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    assert found == iamnn_studio.__file__
