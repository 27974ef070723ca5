"""`pip install ./python` into a fresh virtual environment, offline, then a tiny example.

The venv sees the system's packages (--system-site-packages: numpy, pyopencl, setuptools and
wheel from Debian), and pip builds without isolation and without an index, so nothing is
downloaded. The package is copied first so that the build leaves nothing in the source tree.
"""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import HERE

SOURCE = HERE.parent  # python/

EXAMPLE = r"""
import os, sys
import numpy as np
import clnorm
here = os.path.realpath(clnorm.__file__)
assert here.startswith(os.path.realpath(sys.prefix)), (here, sys.prefix)
x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
y = clnorm.normalize(x, "layer")
m = x.reshape(2, -1).mean(1)[:, None, None]
s = x.reshape(2, -1).std(1)[:, None, None]
assert np.allclose(y, (x - m) / np.sqrt(s * s + 1e-5), atol=1e-5)
print("clnorm", clnorm.version(), "from", here)
"""


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


def test_pip_install_into_fresh_venv_offline(tmp_path):
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    if made.returncode != 0:
        pytest.skip("cannot create a virtual environment with %s (on Debian: apt-get install "
                    "python3-venv): %s" % (sys.executable, made.stderr.strip()[-400:]))
    py = venv / ("Scripts" if os.name == "nt" else "bin") / "python"

    src = tmp_path / "src"
    shutil.copytree(SOURCE, src, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "tests"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
    inst = _run([str(py), "-m", "pip", "install", "--no-build-isolation", "--no-index",
                 str(src)], env=env, cwd=tmp_path)
    assert inst.returncode == 0, (
        "pip install --no-build-isolation --no-index ./python failed in a fresh venv (Debian: "
        "python3-setuptools and python3-wheel provide the build backend):\n%s\n%s"
        % (inst.stdout[-2000:], inst.stderr[-2000:]))

    run = _run([str(py), "-c", EXAMPLE], env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "clnorm " in run.stdout and os.path.realpath(str(venv)) in run.stdout, run.stdout

    shown = _run([str(py), "-m", "pip", "show", "clnorm"], env=env, cwd=tmp_path)
    assert "Requires: numpy, pyopencl" in shown.stdout


def _where(env_changes, tmp_path):
    """clnorm.library_path() in a fresh interpreter with these environment changes."""
    env = dict(os.environ)
    for k, v in env_changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    code = "import clnorm; print(clnorm.library_path()); print(clnorm.version())"
    return _run([sys.executable, "-c", code], env=env, cwd=tmp_path)


def _built_library():
    lib = os.environ.get("CLNORM_LIBRARY")
    if not lib:
        pytest.skip("CLNORM_LIBRARY does not name the built library")
    return os.path.realpath(lib)


def test_library_found_through_pkg_config(tmp_path):
    if not shutil.which("pkg-config"):
        pytest.skip("no pkg-config")
    lib = _built_library()
    libdir = tmp_path / "prefix" / "lib"
    (libdir / "pkgconfig").mkdir(parents=True)
    os.symlink(lib, libdir / "libclnorm.so")
    (libdir / "pkgconfig" / "clnorm.pc").write_text(
        "libdir=%s\n\nName: clnorm\nDescription: test\nVersion: 0.1.0\nLibs: -L${libdir} "
        "-lclnorm\n" % libdir)
    got = _where({"CLNORM_LIBRARY": None, "PKG_CONFIG_PATH": str(libdir / "pkgconfig")},
                 tmp_path)
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines()[0] == str(libdir / "libclnorm.so")


def test_library_found_on_the_loader_path(tmp_path):
    lib = _built_library()
    got = _where({"CLNORM_LIBRARY": None, "PKG_CONFIG_PATH": str(tmp_path),
                  "PKG_CONFIG_LIBDIR": str(tmp_path),
                  "LD_LIBRARY_PATH": os.path.dirname(lib)}, tmp_path)
    assert got.returncode == 0, got.stderr
    assert "clnorm" in got.stdout.splitlines()[0]


def test_named_library_that_is_missing_is_an_error(tmp_path):
    missing = str(tmp_path / "nowhere" / "libclnorm.so")
    got = _where({"CLNORM_LIBRARY": missing}, tmp_path)
    assert got.returncode != 0
    assert "LibraryNotFound" in got.stderr and missing in got.stderr
    assert "CLNORM_LIBRARY" in got.stderr
