"""`make demo`'s pipeline end to end on the smallest sample, and the data it versions."""

import base64
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from neurosam3d.demo import run_demo, sync_samples
from neurosam3d.registry.promotion import Action, promote
from pipelines.resources import DvcResource
from tests.pipelines.conftest import REPO, make_project

ASSETS = {
    "raw_dataset",
    "label_tree",
    "dataset_manifest",
    "combined_manifest",
    "trained_model",
    "evaluation",
    "registered_model",
    "promotion",
}
ASSET_KEYS = [dg.AssetKey(name) for name in sorted(ASSETS)]


def test_samples_copy_reproduces_the_committed_data_dvc_hash(tmp_path: Path) -> None:
    """Two fresh copies hash identically, to the md5 committed in data.dvc."""
    committed = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]["md5"]
    for name in ("a", "b"):
        project = make_project(tmp_path / name)
        sync_samples(REPO / "samples", project / "data")
        assert DvcResource(root=str(project)).folder_hash(project / "data") == committed, (
            "samples/ changed: run `make demo` and commit the new data.dvc"
        )


def _materialised(instance: dg.DagsterInstance) -> set[str]:
    return {
        key.to_user_string()
        for key in ASSET_KEYS
        if instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1).records
    }


@pytest.mark.slow
def test_demo_pipeline_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = make_project(
        tmp_path / "project",
        {
            "train": {
                "set": [
                    "trainer.max_steps=2",
                    "trainer.max_time_s=60",
                    "trainer.val_every_n_steps=2",
                    "trainer.validate_before_training=false",
                    "data.val_max_items=2",
                    "data.samples_per_epoch=4",
                ]
            },
            "evaluate": {"manifest": ["work/data/manifests/SCTPaired_Val.parquet"], "clicks": 5},
        },
    )
    run_demo(project)  # raises unless every run succeeds and `dvc status` is clean afterwards

    from mlflow import MlflowClient

    uri = f"sqlite:///{project / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("neurosam3d", "champion")
    registration = json.loads((project / "work" / "register" / "registration.json").read_text())
    assert str(champion.version) == registration["version"]
    data_md5 = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]
    assert champion.tags["neurosam3d.data_version"] == data_md5
    assert champion.tags["neurosam3d.eval.clicks"] == "5"
    assert any((project / ".dvc-remote").rglob("*")), "the demo pushes to the local DVC remote"

    instance = dg.DagsterInstance.from_config(str(project / ".dagster_home"))
    assert _materialised(instance) == ASSETS
    checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("registered_model"), "challenger_scored")]
    )
    assert all(c.status.value == "SUCCEEDED" for c in checks.values())

    # The registered pyfunc segments a real image from a click, on the image's grid.
    import mlflow.pyfunc
    import nibabel as nib

    image = project / "work" / "data" / "datasets" / "sample_amos_style_cord" / "SCTPaired"
    image = image / "imagesVal" / "sct_t2s.nii.gz"
    source = client.get_model_version_download_uri("neurosam3d", champion.version)
    model = mlflow.pyfunc.load_model(source)  # a local path: no global tracking URI needed
    out = model.predict(pd.DataFrame({"image": [str(image)], "points": ["24,27,4,+"]}))
    mask = nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(out["mask"][0])))
    assert mask.shape == nib.load(image).shape and int(out["voxels"][0]) == int(
        mask.get_fdata().sum()
    )

    # After the Dagster run DVC has nothing to do, and Dagster would skip every stage.
    dvc = DvcResource(root=str(project))
    assert dvc.stale_stages() == []
    repro = subprocess.run(
        [str(REPO / ".venv" / "bin" / "dvc"), "repro"], cwd=project, capture_output=True, text=True
    )
    assert "Data and pipelines are up to date." in repro.stdout
    again = promote(client, "neurosam3d")
    assert again.action is Action.ALREADY_CHAMPION

    # `make serve` (mlflow/serve-model.sh) answers the README's REST request with the mask: in
    # this project's environment, and in a fresh one that MLflow builds with uv from the model's
    # logged requirements alone (issue 12: the registered model is self-contained). The fresh
    # server runs outside the checkout, so the package can only come from the model's code_paths;
    # its image path is therefore absolute.
    shutil.copy(REPO / "mlflow" / "serve-model.sh", project / "mlflow" / "serve-model.sh")
    image_rel = "samples/amos_style/imagesVa/sct_t2s.nii.gz"
    envs = tmp_path / "mlflow-envs"
    for env_manager, image_arg in (("local", image_rel), ("uv", str(project / image_rel))):
        answer = _serve_and_ask(
            project,
            {"columns": ["image", "points"], "data": [[image_arg, "24,27,4,+"]]},
            env_manager,
            {"MLFLOW_ENV_ROOT": str(envs)},
        )
        served = nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(answer[0]["mask"])))
        assert served.shape == nib.load(project / image_rel).shape, env_manager
        # the same model, the same click
        assert int(answer[0]["voxels"]) == int(out["voxels"][0]), env_manager
    (fresh,) = envs.iterdir()  # the uv environment MLflow built for the model
    installed = {p.name.lower() for p in fresh.glob("lib/python*/site-packages/*")}
    assert any(name.startswith("torch-2.13.0") for name in installed), sorted(installed)
    assert not any(name.startswith("neurosam3d") for name in installed), sorted(installed)


def _serve_and_ask(
    project: Path,
    dataframe_split: dict,
    env_manager: str,
    extra_env: dict[str, str],
    timeout_s: float = 600,
) -> list[dict]:
    """Start ``mlflow/serve-model.sh`` with ``env_manager`` on a free port of 127.0.0.1, POST one
    request, stop it. ``timeout_s`` covers building a fresh environment (``uv``)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | extra_env
    log = project / f"serve-{env_manager}.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [
                str(project / "mlflow" / "serve-model.sh"),
                "models:/neurosam3d@champion",
                str(port),
                env_manager,
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/invocations"
    body = json.dumps({"dataframe_split": dataframe_split}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return json.loads(response.read())["predictions"]
            except (urllib.error.URLError, ConnectionError) as err:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"no answer: {err}\n{log.read_text()[-3000:]}") from err
                time.sleep(1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
