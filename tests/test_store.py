"""The store's API and the `calibrate runs` commands, on SQLite and PostgreSQL."""

import json
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from calibrate.cli import main
from store import FitRecord, HostRecord, MemorySample, RunRecord, Store, StoreError

HOST = HostRecord("gpu-host-1", "NVIDIA H100 80GB HBM3", 8, 79.19, "560.35", "12.6", "0.32.0", "2.9.0", "Xeon")


def run(model="m", gpu="H100", status="ok", vllm="0.32.0", when=(2026, 11, 1), **kw) -> RunRecord:
    return RunRecord(model=model, benchmark="serve", gpu=gpu, status=status, vllm_version=vllm,
                     started_at=datetime(*when, tzinfo=timezone.utc), metrics={"output_tokens_per_s": 100.0},
                     workload={"concurrency": 4}, config={"tensor_parallel_size": 2}, host=HOST, **kw)


@pytest.fixture
def store(db_url):
    Store.connect(db_url).upgrade()
    return Store.open(db_url)


def test_runs_round_trip_with_host_and_memory_samples(store):
    samples = (MemorySample(0.0, "cuda:0", 1_000), MemorySample(0.5, "cuda:0", 70_000_000_000))
    run_id = store.add_run(run(memory_samples=samples, prediction={"output_tokens_per_s": 90.0},
                               labels={"campaign": "nov"}, log_tail="KV cache size: 1,000 tokens"))
    back = store.get_run(run_id)
    assert back.host == HOST and back.memory_samples == samples and back.labels == {"campaign": "nov"}
    assert back.prediction == {"output_tokens_per_s": 90.0} and back.config == {"tensor_parallel_size": 2}
    assert RunRecord.from_dict(json.loads(json.dumps(back.to_dict()))) == back


def test_hosts_are_shared_by_fingerprint(store):
    store.add_run(run())
    store.add_run(run(model="other"))
    hosts = {r.host.fingerprint for r in store.list_runs()}
    assert len(hosts) == 1


def test_runs_from_several_hosts_land_side_by_side(store):
    other = HostRecord("gpu-host-2", "NVIDIA A100-SXM4-80GB", 4, 79.15, "550.54", "12.4", "0.32.0", "2.9.0", "EPYC")
    store.add_run(run())
    store.add_run(RunRecord(model="m", benchmark="serve", gpu="A100", host=other))
    store.add_run(run())
    hosts = [r.host.hostname for r in store.list_runs()]
    assert hosts == ["gpu-host-1", "gpu-host-2", "gpu-host-1"]
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM hosts").scalar() == 2


def test_filters(store):
    store.add_run(run(model="a", gpu="H100", when=(2026, 10, 1)))
    store.add_run(run(model="a", gpu="A100", status="failed", when=(2026, 11, 2)))
    store.add_run(run(model="b", gpu="H100", vllm="0.31.0", when=(2026, 11, 20), labels={"k": "v"}))
    assert [r.gpu for r in store.list_runs(model="a")] == ["H100", "A100"]
    assert len(store.list_runs(status="failed")) == 1
    assert [r.model for r in store.list_runs(vllm_version="0.31.0")] == ["b"]
    assert len(store.list_runs(since=datetime(2026, 11, 1, tzinfo=timezone.utc))) == 2
    assert len(store.list_runs(until=datetime(2026, 11, 1, tzinfo=timezone.utc))) == 1
    assert [r.model for r in store.list_runs(labels={"k": "v"})] == ["b"]
    with pytest.raises(StoreError, match="unknown run filter colour"):
        store.list_runs(colour="red")


def test_delete_cascades_to_memory_samples(store):
    run_id = store.add_run(run(memory_samples=(MemorySample(0.0, "cpu", 5),)))
    assert store.delete_runs([run_id]) == 1
    with pytest.raises(StoreError, match=f"run {run_id} does not exist"):
        store.get_run(run_id)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM memory_samples").scalar() == 0


def test_fits_are_stored_with_provenance(store):
    fit_id = store.add_fit(FitRecord(name="h100-nov", coefficients={"bandwidth_efficiency": 0.74},
                                     standard_errors={"bandwidth_efficiency": 0.02}, inputs_hash="ab" * 32,
                                     run_ids=(1, 2), scope={"gpu": "H100"}, software={"vllm": "0.32.0"}))
    [fit] = store.list_fits()
    assert fit.id == fit_id and fit.run_ids == (1, 2) and fit.coefficients == {"bandwidth_efficiency": 0.74}


def test_update_run_status_and_samples(store):
    run_id = store.add_run(run(status="running"))
    store.update_run(run_id, status="interrupted", error="Ctrl-C", memory_samples=(MemorySample(1.0, "cpu", 9),))
    back = store.get_run(run_id)
    assert back.status == "interrupted" and back.error == "Ctrl-C" and len(back.memory_samples) == 1


def test_runs_cli(db_url, store):
    store.add_run(run(model="a"))
    store.add_run(run(model="b", status="failed", error="CUDA out of memory"))
    cli = CliRunner()
    listed = cli.invoke(main, ["runs", "list", "--db", db_url])
    assert listed.exit_code == 0 and len(listed.output.splitlines()) == 3
    assert listed.output.splitlines()[0].split() == ["id", "status", "benchmark", "model", "gpu", "output/s",
                                                     "started"]
    as_json = json.loads(cli.invoke(main, ["runs", "list", "--db", db_url, "--status", "failed", "--json"]).output)
    assert [r["model"] for r in as_json] == ["b"] and as_json[0]["error"] == "CUDA out of memory"
    shown = cli.invoke(main, ["runs", "show", str(as_json[0]["id"]), "--db", db_url])
    assert "error: CUDA out of memory" in shown.output and "host: gpu-host-1, 8 x NVIDIA H100 80GB HBM3" in shown.output
    exported = cli.invoke(main, ["runs", "export", "--db", db_url, "--format", "json", "--model", "a"]).output
    assert [r["model"] for r in json.loads(exported)] == ["a"]
    deleted = cli.invoke(main, ["runs", "delete", str(as_json[0]["id"]), "9999", "--db", db_url])
    assert deleted.exit_code == 1 and deleted.output == "1 run(s) deleted\nError: 1 of the ids did not exist\n"
    missing = cli.invoke(main, ["runs", "show", "9999", "--db", db_url])
    assert missing.exit_code == 1 and missing.output == "Error: run 9999 does not exist (see `calibrate runs list`)\n"
    bad_date = cli.invoke(main, ["runs", "list", "--db", db_url, "--since", "yesterday"])
    assert bad_date.exit_code == 2 and "'yesterday' is not a date" in bad_date.output


def test_fits_are_found_by_id_by_inputs_and_by_gpu(store):
    first = store.add_fit(FitRecord(name="a", coefficients={}, scope={"gpu": "H100-SXM"}, inputs_hash="a" * 64))
    second = store.add_fit(FitRecord(name="b", coefficients={}, scope={"gpu": "L4"}, inputs_hash="b" * 64))
    third = store.add_fit(FitRecord(name="c", coefficients={}, scope={}, inputs_hash="c" * 64))
    assert store.get_fit(second).name == "b"
    with pytest.raises(StoreError, match="fit 99 does not exist"):
        store.get_fit(99)
    assert store.find_fit_by_hash("a" * 64).id == first and store.find_fit_by_hash("d" * 64) is None
    assert store.latest_fit({"H100-SXM"}).id == third  # a fit with no GPU scope covers every GPU
    assert store.latest_fit(None).id == third


def test_a_record_in_a_newer_format_is_refused_with_what_to_do():
    data = run().to_dict()
    assert RunRecord.from_dict(data) == run()
    with pytest.raises(StoreError, match="format 99, newer than this vllm-planner reads"):
        RunRecord.from_dict({**data, "schema_version": 99})
    with pytest.raises(StoreError, match="upgrade vllm-planner"):
        FitRecord.from_dict({"name": "x", "coefficients": {}, "schema_version": 2**40})
