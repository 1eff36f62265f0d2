"""Four processes import 100 results each into one database at the same time: all 400 land, none twice, and no
"database is locked" reaches the user."""

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from calibrate.cli import main
from store import Store
from tests.conftest import ROOT

SOURCE = json.loads((Path(__file__).parent / "fixtures/vllm/bench_serve.json").read_text())


def _results(tmp_path, processes=4, each=100) -> list[list[str]]:
    batches = []
    for p in range(processes):
        folder = tmp_path / f"host{p}"
        folder.mkdir()
        files = []
        for i in range(each):
            data = dict(SOURCE, date=f"20261127-{p:02d}{i // 60:02d}{i % 60:02d}",
                        output_throughput=SOURCE["output_throughput"] + p * 1000 + i)
            path = folder / f"result{i}.json"
            path.write_text(json.dumps(data))
            files.append(str(path))
        batches.append(files)
    return batches


def test_four_processes_import_at_once(db_url, tmp_path):
    if db_url.startswith("postgresql"):
        assert CliRunner().invoke(main, ["db", "upgrade", "--db", db_url]).exit_code == 0
    # SQLite starts from no file at all: the four processes also race to create and migrate it.
    procs = [subprocess.Popen([sys.executable, "-m", "calibrate", "import", *files, "--db", db_url, "--gpu", "cpu"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for files in _results(tmp_path)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert "locked" not in out + err
        assert out.count("run(s) imported") == 100
    runs = Store.open(db_url).list_runs()
    assert len(runs) == 400
    assert len({r.content_hash for r in runs}) == 400
    assert len({r.metrics["output_tokens_per_s"] for r in runs}) == 400
