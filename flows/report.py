"""The monthly cycle's report as markdown for the Prefect UI's artifacts (pure functions over the
JSON-ready documents: ``SourceReport.as_dict()``, ``BuildResult.as_dict()``, ``TrainResult.as_dict()``,
``CycleSummary``)."""

from __future__ import annotations

from typing import Any

from pipeline.cycle import CycleSummary, ProfileOutcome


def cycle_markdown(summary: CycleSummary) -> str:
    """The whole cycle: the headline, the sources' ingest and each profile's outcome."""
    lines = [
        "# plora monthly cycle",
        "",
        f"**{_cell(summary.headline())}**",
        "",
        f"Home: `{summary.home}`" + (" (forced)" if summary.force else ""),
        "",
    ]
    lines += [
        "## Sources",
        "",
        ingest_markdown(summary.sources)
        if summary.sources
        else f"_ingest failed: {_cell(summary.ingest_error or 'no sources')}_",
        "",
    ]
    lines += ["## Profiles", "", profiles_markdown(summary.profiles)]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(out)


def ingest_markdown(sources: dict[str, dict[str, Any]]) -> str:
    """Per source: added / updated / unchanged / deleted / skipped / redactions / error."""
    return _table(
        ["source", "added", "updated", "unchanged", "deleted", "skipped", "redactions", "error"],
        [
            [
                name,
                r.get("added"),
                r.get("updated"),
                r.get("unchanged"),
                r.get("deleted"),
                len(r.get("skipped") or []),
                r.get("redactions"),
                r.get("error"),
            ]
            for name, r in sources.items()
        ],
    )


def snapshots_markdown(build: dict[str, Any]) -> str:
    """Per snapshot kind of a ``BuildResult.as_dict()``: fingerprint, rows and tokens per split."""
    snapshots = build.get("snapshots") or {}
    return _table(
        ["kind", "snapshot", "train rows", "eval rows", "train tokens", "new"],
        [
            [
                kind,
                (s.get("fingerprint") or "")[:12],
                (s.get("rows") or {}).get("train", 0),
                (s.get("rows") or {}).get("eval", 0),
                (s.get("tokens") or {}).get("train", 0),
                "yes" if s.get("new") else "no",
            ]
            for kind, s in snapshots.items()
        ],
    )


def train_markdown(result: dict[str, Any]) -> str:
    """A ``TrainResult.as_dict()``: eval losses of base / previous / new, the gate and the registration."""
    losses = result.get("eval_loss") or {}
    gate = result.get("gate") or {}
    rows: list[list[Any]] = [
        ["eval loss, base model", losses.get("base")],
        ["eval loss, previous adapter", losses.get("previous")],
        ["eval loss, new adapter", losses.get("new")],
        ["gate", f"{gate.get('decision', '-')} (vs {gate.get('compared_with', '-')})"],
        ["adapter", f"{result.get('adapter')} ({result.get('adapter_status')})"],
        ["current", result.get("current")],
        ["why not current", result.get("why")],
        ["run", result.get("run_id")],
        ["resumed", result.get("resumed")],
        ["mode", result.get("mode")],
        ["trainable parameters", result.get("trainable_parameters")],
        ["tokens trained", result.get("tokens_trained")],
        ["wall seconds", result.get("wall_seconds")],
    ]
    text = _table(["", result.get("profile") or "run"], rows)
    reasons = gate.get("reasons") or []
    if reasons:
        text += "\n\nGate: " + "; ".join(_cell(r) for r in reasons)
    return text


def profiles_markdown(profiles: dict[str, ProfileOutcome]) -> str:
    """Per profile: what happened, the snapshots, eval losses, the gate and the adapter."""
    rows = []
    for name, outcome in profiles.items():
        data = outcome.as_dict()
        losses = data["eval_loss"]
        snapshots = ", ".join(f"{kind} {fp[:12]}" for kind, fp in data["snapshots"].items())
        rows.append(
            [
                name,
                data["status"],
                snapshots,
                losses.get("base"),
                losses.get("previous"),
                losses.get("new"),
                data["gate"],
                data["adapter"],
                data["why"],
            ]
        )
    return _table(
        ["profile", "status", "snapshots", "eval loss base", "previous", "new", "gate", "adapter", "why"], rows
    )
