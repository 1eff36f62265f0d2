"""The installed package, not the checkout: the wheel carries the migrations, and `calibrate db upgrade` works
from it."""

import os
import subprocess
import sys
import zipfile

from tests.conftest import ROOT


def test_wheel_ships_the_migrations_and_they_run(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, capture_output=True)
    [wheel] = wheels.glob("vllm_planner-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"migrations/env.py", "migrations/script.py.mako", "migrations/versions/0001_hosts_runs_memory_samples.py",
            "migrations/versions/0002_fits_and_run_labels.py", "migrations/versions/0003_run_notes.py",
            "migrations/versions/0004_wider_model_and_version.py", "migrations/versions/0005_named_constraints.py",
            "estimator/data/models.json", "estimator/data/gpus.json", "estimator/data/default_coefficients.json"} <= names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(target))
    db = f"sqlite:///{tmp_path}/fresh.db"
    out = subprocess.run([sys.executable, "-c", "import migrations, sys; print(migrations.__file__); "
                          "from calibrate.cli import main; sys.argv = ['calibrate', 'db', 'upgrade', '--db', "
                          f"{db!r}]; main()"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    location, result = out.stdout.splitlines()
    assert location.startswith(str(target)) and result == "empty -> 0005"
