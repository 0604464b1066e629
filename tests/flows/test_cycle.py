"""The monthly-cycle flows under ``prefect_test_harness()`` on the example corpus: a cycle registers
adapters and a second one with no changes trains nothing; a failing source fails the flow while the
others ingest; an interrupted run is resumed by the next attempt; plus the deployments as
``serve()`` sees them and the cycle report's markdown."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.home import Home
from pipeline.init import init_home
from pipeline.workspace import open_workspace

REPO = Path(__file__).resolve().parents[2]
MAX_STEPS = 2  # the example's work profile would train 30 steps: keep the tests short

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory):
    """One temporary Prefect API (its own database) for the module; results (the datasets cache)
    kept in a tmp folder, not ~/.prefect."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry from the test server
        from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
        from prefect.testing.utilities import prefect_test_harness

        storage = tmp_path_factory.mktemp("prefect-results")
        with (
            temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: storage}),
            prefect_test_harness(server_startup_timeout=120),
        ):
            yield


def _example_home(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    init_home(Home.resolve(path), example=True)
    return path


@pytest.fixture(scope="module")
def example_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _example_home(tmp_path_factory.mktemp("cycle") / "home")


def _versions(home: Path) -> dict[str, list[str]]:
    from pipeline import registry

    with open_workspace(home, check_paths=False) as workspace:
        out: dict[str, list[str]] = {}
        for version in registry.list_versions(workspace):
            out.setdefault(version.profile, []).append(f"v{version.version} {version.status}")
        return out


@pytest.mark.slow
def test_monthly_cycle_registers_adapters_then_trains_nothing_when_nothing_changed(
    harness, example_home, cli, monkeypatch
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.cycle import build_datasets_flow, monthly_retrain_flow
    from pipeline import cycle, registry

    # 1. the first cycle ingests every source and trains every profile
    state = monthly_retrain_flow(home=str(example_home), max_steps=MAX_STEPS, return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["ok"] and summary["failed"] == {"sources": [], "profiles": []}
    assert set(summary["ingest"]["sources"]) == {"chatgpt", "claude", "chats", "vault", "code"}
    assert all(row["added"] > 0 and row["error"] is None for row in summary["ingest"]["sources"].values())
    assert summary["trained"] == ["work", "creative"]
    with open_workspace(example_home, check_paths=False) as workspace:
        for name in ("work", "creative"):
            row = summary["profiles"][name]
            assert row["status"] == "trained" and row["adapter"] == f"{name}@v1", row
            assert row["run_id"] and row["tokens_trained"] > 0 and row["trainable_parameters"] > 0
            assert isinstance(row["eval_loss"]["base"], float) and isinstance(row["eval_loss"]["new"], float)
            assert (row["adapter_status"] in ("accepted", "rejected") and row["why"] is None) or not row["promoted"]
            version = registry.resolve(workspace, f"{name}@v1")  # registered in the store
            assert version.manifest.snapshots == row["snapshots"]  # what change detection compares
            assert row["notes"][0] == "no interrupted run to resume: starting a new run"
    assert set(summary["registered"]) | {r["adapter"] for r in summary["rejected"]} == {"work@v1", "creative@v1"}

    # the Prefect UI gets a markdown summary of the run
    with get_client(sync_client=True) as client:
        key = ArtifactFilterKey(any_=["plora-monthly-cycle"])
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=key))
    assert artifacts and "| work | trained |" in artifacts[0].data and "## Sources" in artifacts[0].data

    # 2. nothing changed: `plora run --json` reuses the snapshots, trains nothing, says so, exits 0
    from flows.cli_cycle import PREFECT_DEFAULTS

    for key, value in PREFECT_DEFAULTS.items():  # restored after the test
        monkeypatch.setenv(key, value)
    result = cli("run", "--home", example_home, "--max-steps", str(MAX_STEPS), "--json")
    assert result.code == 0, result.stderr[-3000:]
    again = result.json()  # stdout is exactly one JSON document
    assert again["trained"] == [] and again["ok"]
    assert again["message"] == "nothing changed since the last cycle: no profile trained"
    for name in ("work", "creative"):
        row = again["profiles"][name]
        assert row["status"] == "unchanged" and row["adapter"] is None and row["run_id"] is None
        assert row["datasets_cached"] is True  # the build task was served from Prefect's cache
        assert row["why"].startswith(f"nothing changed since {name}@v1")
        assert row["snapshots"] == summary["profiles"][name]["snapshots"]
    assert all(row["added"] == 0 and row["updated"] == 0 for row in again["ingest"]["sources"].values())
    assert {p: len(v) for p, v in _versions(example_home).items()} == {"work": 1, "creative": 1}
    assert not list(example_home.rglob("*prefect*"))  # Prefect's state stays out of the plora home

    # a cached build whose snapshot folder is gone is rebuilt, not trusted
    text_dir = example_home / "datasets" / "text" / summary["profiles"]["creative"]["snapshots"]["text"]
    shutil.rmtree(text_dir)
    build = build_datasets_flow(home=str(example_home), profile="creative")
    assert build["cached"] is False and (text_dir / "data").is_dir()
    assert build["snapshots"]["text"]["fingerprint"] == text_dir.name

    # 3. a settings change that changes the data is a change: rebuilt (not cached), and it would train
    config = example_home / "plora.toml"
    text = config.read_text(encoding="utf-8")
    creative = text.index("[profiles.creative]")
    config.write_text(
        text[:creative] + text[creative:].replace("eval_percent = 10", "eval_percent = 30", 1), encoding="utf-8"
    )
    build = build_datasets_flow(home=str(example_home), profile="creative")
    assert build["cached"] is False and build["profile"] == "creative"
    with open_workspace(example_home, check_paths=False) as workspace:
        check = cycle.check_changes(workspace, "creative")
    assert check.changed and check.last_adapter == "creative@v1"
    assert check.reason.startswith("dataset snapshots changed since creative@v1: ")


def test_a_failing_source_fails_the_flow_but_the_others_ingest(harness, tmp_path, monkeypatch):
    from flows import tasks
    from flows.cycle import ingest_flow
    from pipeline.cycle import CycleFailed

    home = _example_home(tmp_path / "home")
    with open(home / "plora.toml", "a", encoding="utf-8") as handle:
        handle.write('\n[[sources]]\nname = "broken"\ntype = "jsonl"\npath = "missing/chats.jsonl"\n')
    # one quick retry instead of the production backoff (10 s, 20 s, 40 s)
    monkeypatch.setattr(tasks, "ingest_source", tasks.ingest_source.with_options(retries=1, retry_delay_seconds=0))

    state = ingest_flow(home=str(home), return_state=True)
    assert state.is_failed()
    failure = state.result(raise_on_failure=False)
    assert isinstance(failure, CycleFailed) and "broken" in str(failure)
    sources = failure.summary["sources"]
    assert list(sources) == ["chatgpt", "claude", "chats", "vault", "code", "broken"]
    assert "missing/chats.jsonl: not found" in sources["broken"]["error"]
    for name in ("chatgpt", "claude", "chats", "vault", "code"):
        assert sources[name]["error"] is None and sources[name]["added"] > 0, name

    # called directly, the flow raises that failure (with the same per-source results)
    with pytest.raises(CycleFailed) as raised:
        ingest_flow(home=str(home), sources=["broken", "chats"])
    assert raised.value.summary["sources"]["chats"]["unchanged"] == 10
    assert raised.value.summary["sources"]["broken"]["error"]


@pytest.mark.slow
def test_an_interrupted_run_is_resumed_by_the_next_attempt(harness, tmp_path):
    from flows.cycle import build_datasets_flow, train_flow
    from pipeline import cycle
    from pipeline.errors import TrainingError
    from pipeline.train import train_profile

    home = _example_home(tmp_path / "home")
    config = home / "plora.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "train = { max_steps = 10, learning_rate", "train = { max_steps = 4, save_steps = 2, learning_rate"
        ),
        encoding="utf-8",
    )
    with open_workspace(home, check_paths=False) as workspace:
        cycle.ingest_source(workspace, "vault")
    build_datasets_flow(home=str(home), profile="creative")

    def crash_after_the_first_checkpoint(event) -> None:
        if event.step is not None and event.step >= 3:
            raise RuntimeError("simulated power cut")

    with open_workspace(home, check_paths=False) as workspace:
        with pytest.raises(TrainingError, match="simulated power cut"):
            train_profile(workspace, "creative", progress=crash_after_the_first_checkpoint)
        choice = cycle.resumable_run(workspace, "creative")
        assert choice.run_id is not None, choice.reason
        assert cycle.resumable_run(workspace, "creative", max_steps=6).run_id is None  # another config: new run

    result = train_flow(home=str(home), profile="creative")
    assert result["resumed"] is True and result["run_id"] == choice.run_id
    assert result["resumed_from"] == {"sft": 2} and result["steps"] == {"sft": 4}
    assert result["notes"][0] == f"resuming the interrupted run {choice.run_id}"
    assert result["adapter"] == "creative@v1"


def test_served_deployments_are_prefect_yaml_s(tmp_path):
    from flows.cycle import FLOWS, deployment_specs, served_deployments

    home = _example_home(tmp_path / "home")
    specs = {spec["name"]: spec for spec in deployment_specs()}
    assert set(specs) == {"monthly-retrain", "ingest-nightly"}
    assert specs["monthly-retrain"]["entrypoint"] == "flows/cycle.py:monthly_retrain_flow"
    assert specs["monthly-retrain"]["schedules"] == [{"cron": "0 3 1 * *", "timezone": "UTC", "active": True}]
    with open(REPO / "prefect.yaml", encoding="utf-8") as handle:
        pull = yaml.safe_load(handle)["pull"]
    assert pull == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PLORA_REPO }}"}}]
    for spec in specs.values():  # parameters are the flow's own
        function = spec["entrypoint"].rsplit(":", 1)[1]
        flow = next(f for f in FLOWS.values() if f.fn.__name__ == function)
        assert set(spec["parameters"]) <= set(flow.parameters.properties), spec["name"]
        assert spec["work_pool"]["name"] == "plora"

    served = {d.name: d for d in served_deployments(str(home))}
    monthly = served["monthly-retrain"]
    assert monthly.flow_name == "monthly-retrain-cycle"
    assert monthly.parameters == {
        "home": str(home.resolve()),
        "profiles": None,
        "mode": None,
        "force": False,
        "max_steps": None,
    }
    (schedule,) = monthly.schedules
    assert schedule.schedule.cron == "0 3 1 * *" and schedule.schedule.timezone == "UTC"
    assert served["ingest-nightly"].flow_name == "ingest-sources"
    assert served["ingest-nightly"].schedules[0].schedule.cron == "0 2 * * *"


def test_cycle_summary_markdown_and_headline() -> None:
    from flows.report import cycle_markdown
    from pipeline.cycle import CycleSummary, ProfileOutcome

    trained = ProfileOutcome(
        "work",
        "trained",
        "no adapter registered yet",
        {"sft": "a" * 64},
        train={
            "run_id": "r1",
            "adapter": "work@v2",
            "adapter_status": "rejected",
            "promoted": False,
            "current": "work@v1",
            "why": "does not beat work@v1 | eval loss 1.2 vs 1.1",
            "eval_loss": {"base": 2.0, "previous": 1.1, "new": 1.2},
            "gate": {"decision": "rejected"},
            "trainable_parameters": 10,
            "tokens_trained": 99,
            "wall_seconds": 1.5,
        },
    )
    unchanged = ProfileOutcome(
        "creative", "unchanged", "nothing changed since creative@v1", {"sft": "b" * 64}, last_adapter="creative@v1"
    )
    summary = CycleSummary(
        home="/h",
        sources={
            "chats": {
                "added": 1,
                "updated": 0,
                "unchanged": 2,
                "deleted": 0,
                "skipped": [],
                "redactions": 0,
                "error": None,
            },
            "vault": {
                "added": 0,
                "updated": 0,
                "unchanged": 0,
                "deleted": 0,
                "skipped": [],
                "redactions": 0,
                "error": "vault: gone",
            },
        },
        profiles={"work": trained, "creative": unchanged},
    )
    document = summary.as_dict()
    assert not document["ok"] and document["failed"] == {"sources": ["vault"], "profiles": []}
    assert document["rejected"] == [{"adapter": "work@v2", "why": "does not beat work@v1 | eval loss 1.2 vs 1.1"}]
    assert document["registered"] == [] and document["trained"] == ["work"]
    assert document["message"] == (
        "sources failed: vault; work: registered work@v2 (rejected, not promoted); "
        "creative: nothing changed, trained nothing"
    )
    markdown = cycle_markdown(summary)
    assert "| source | added | updated | unchanged | deleted | skipped | redactions | error |" in markdown
    assert "| vault | 0 | 0 | 0 | 0 | 0 | 0 | vault: gone |" in markdown
    assert (
        "| work | trained | sft aaaaaaaaaaaa | 2.0000 | 1.1000 | 1.2000 | rejected | work@v2 |"
        " does not beat work@v1 \\| eval loss 1.2 vs 1.1 |" in markdown
    )
    assert (
        "| creative | unchanged | sft bbbbbbbbbbbb | - | - | - | - | - | nothing changed since creative@v1 |"
        in markdown
    )


def test_run_serve_and_deploy_are_commands(cli, home) -> None:
    for command in ("run", "serve", "deploy"):
        result = cli(command, "--help")
        assert result.code == 0, result.stderr
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = cli("deploy")
    assert result.code == 2 and "PREFECT_API_URL is not set" in result.stderr
    assert cli("run", "--home", home, "--mode", "sideways").code == 2
