"""What ``plora status`` reports: store counts, with every configured source listed."""

from __future__ import annotations

from typing import Any

from pipeline.workspace import Workspace
from storage import stats


def status(workspace: Workspace) -> dict[str, Any]:
    with workspace.store.read() as session:
        report = stats.status(session)
    for source in workspace.config.sources:
        report["sources"].setdefault(
            source.name,
            {
                "type": source.type,
                "documents": 0,
                "conversations": 0,
                "messages": 0,
                "last_ingest": None,
            },
        )
    report["home"] = str(workspace.home.root)
    report["store"] = workspace.store.display_url
    return report
