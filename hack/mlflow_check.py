"""What MLflow's own client sees of a registered model, as JSON on stdout.

Run with the Python of hack/mlflow-venv.sh; the tracking server comes from MLFLOW_TRACKING_URI
(and MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD for the basic-auth app):

    python hack/mlflow_check.py MODEL_NAME JOB_ID [ALIAS] [--download DIR]

prints

    {
      "versions": [{"version", "run_id", "source", "status", "tags", "model_id",
                    "description"}],                                   # this job's versions
      "logged_model": {"model_id", "name", "status", "source_run_id", "params", "metrics",
                       "tags"} | null,         # the first version's LoggedModel (MLflow 3)
      "runs": [{"run_id", "status", "params", "metrics", "tags"}],      # the experiment's runs
                                                                         # tagged with the job
      "model_files": {"<path>": "<sha256>"},  # downloaded through the first version's source
      "run_files": {"<path>": "<sha256>"},    # downloaded through the first version's run
      "alias": {"version", "run_id"} | null   # what ALIAS resolves to, when given
    }

With --download DIR the first version's model files are also left in DIR (for a signature
verifier to read).

The registry tests (tests/registry_mlflow.rs) compare this with what they registered.
"""

import hashlib
import json
import os
import sys
import tempfile

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

JOB_ID_TAG = "cxone.job_id"


def all_pages(search, **kwargs):
    token = None
    while True:
        page = search(page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


def hashes(root):
    out = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(path, root).replace(os.sep, "/")] = digest
    return out


def main():
    args = sys.argv[1:]
    download = None
    if "--download" in args:
        at = args.index("--download")
        download = args[at + 1]
        del args[at : at + 2]
    model, job_id = args[0], args[1]
    alias = args[2] if len(args) > 2 else None
    client = MlflowClient()

    # No filter on the name or the tag: the test's names and job ids may hold quotes, and the
    # point is to check the registration independently of the client's own filter strings.
    versions = [
        mv
        for mv in all_pages(client.search_model_versions, max_results=1000)
        if mv.name == model and mv.tags.get(JOB_ID_TAG) == job_id
    ]
    versions.sort(key=lambda mv: int(mv.version))
    result = {
        "versions": [
            {
                "version": mv.version,
                "run_id": mv.run_id,
                "source": mv.source,
                "status": mv.status,
                "tags": mv.tags,
                "model_id": mv.model_id,
                "description": mv.description,
            }
            for mv in versions
        ],
        "logged_model": None,
        "runs": [],
        "model_files": {},
        "run_files": {},
        "alias": None,
    }

    if versions:
        first = versions[0]
        run = client.get_run(first.run_id)
        experiment_runs = all_pages(
            client.search_runs, experiment_ids=[run.info.experiment_id], max_results=1000
        )
        result["runs"] = [
            {
                "run_id": r.info.run_id,
                "status": r.info.status,
                "params": r.data.params,
                "metrics": r.data.metrics,
                "tags": r.data.tags,
            }
            for r in experiment_runs
            if r.data.tags.get(JOB_ID_TAG) == job_id
        ]
        # MLflow 3.17's SQL registry keeps no model_id column: the version names its LoggedModel
        # through its source `models:/<model id>` (what the UI links), and the LoggedModel lists
        # its versions in the tag mlflow.modelVersions.
        model_id = first.model_id
        if not model_id and first.source.startswith("models:/m-"):
            model_id = first.source[len("models:/") :]
        if model_id:
            lm = client.get_logged_model(model_id)
            result["logged_model"] = {
                "model_id": lm.model_id,
                "name": lm.name,
                "status": str(lm.status),
                "source_run_id": lm.source_run_id,
                "params": lm.params,
                "metrics": {m.key: m.value for m in (lm.metrics or [])},
                "tags": lm.tags,
            }
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = mlflow.artifacts.download_artifacts(
                artifact_uri=first.source, dst_path=download or os.path.join(tmp, "model")
            )
            result["model_files"] = hashes(model_dir)
            run_dir = client.download_artifacts(first.run_id, "", os.path.join(tmp, "run"))
            result["run_files"] = hashes(run_dir)

    if alias:
        try:
            mv = client.get_model_version_by_alias(model, alias)
            result["alias"] = {"version": mv.version, "run_id": mv.run_id}
        except MlflowException:
            result["alias"] = None

    json.dump(result, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
