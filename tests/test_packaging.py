"""The wheel carries what the package needs at run time: a fresh install lists the built-in datasets."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from mscbench.data.sources import CARDS_DIR, SOURCES

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_the_built_wheel_installed_in_a_fresh_venv_lists_the_builtin_datasets(tmp_path):
    source = tmp_path / "source"  # a copy: building in place would leave build/ in the repository
    shutil.copytree(ROOT / "mscbench", source / "mscbench", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", source,
        "-w", tmp_path / "wheels")
    wheel, = (tmp_path / "wheels").glob("mscbench-*.whl")
    cards = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("mscbench/data/cards/")}
    assert cards == {f"mscbench/data/cards/{path.name}" for path in CARDS_DIR.glob("*.toml")}
    run(sys.executable, "-m", "venv", tmp_path / "venv")
    python = tmp_path / "venv" / "bin" / "python"
    # this venv's packages lend torch & co. (appended after the fresh venv's own, whose .pth files, like
    # the editable install's, are not run); the wheel's own mscbench must be what runs
    site_packages = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (site_packages / "lend.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel)
    where = run(python, "-c", "import mscbench; print(mscbench.__file__)", cwd=tmp_path)
    assert where.startswith(str(tmp_path / "venv")), where
    listing = run(tmp_path / "venv" / "bin" / "mscbench", "datasets", "--data-dir", tmp_path / "data",
                  cwd=tmp_path)
    for name in SOURCES:
        assert name in listing
    assert "not downloaded" in listing
