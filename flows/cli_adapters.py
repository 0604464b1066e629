"""``plora adapters list|show|verify|promote|rollback|export|combine|adopt``.

Each command calls pipeline.registry and formats the result. REF is
``PROFILE`` (its current version) or ``PROFILE@vN``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.options import HomeOption, JsonOption
from flows.output import print_json, stdout

if TYPE_CHECKING:
    from pipeline.registry import AdapterVersion

RefArgument = Annotated[str, typer.Argument(help="PROFILE (its current version) or PROFILE@vN.", show_default=False)]


def register(app: typer.Typer) -> None:
    adapters_app = typer.Typer(
        help="Registered adapter versions: list, show, verify, promote, roll back, export, combine, adopt.",
        no_args_is_help=True,
    )
    adapters_app.command("list")(list_)
    adapters_app.command("show")(show)
    adapters_app.command("verify")(verify)
    adapters_app.command("promote")(promote)
    adapters_app.command("rollback")(rollback)
    adapters_app.command("export")(export)
    adapters_app.command("combine")(combine)
    adapters_app.command("adopt")(adopt)
    app.add_typer(adapters_app, name="adapters")


@dataclass(frozen=True)
class VersionRow:
    """One version as ``plora adapters list --json`` shows it (``asdict`` is the JSON row)."""

    ref: str
    profile: str
    version: int
    status: str
    current: bool
    parent_version: int | None
    base_model: str
    base_fingerprint: str
    path: str
    created_at: str | None
    run_id: str | None
    metrics: dict[str, Any]
    gate: dict[str, Any]
    serving: dict[str, bool] | None  # {"vllm": ok, "llama_cpp": ok}; None: registered before the check

    @classmethod
    def of(cls, version: AdapterVersion, current: int | None) -> VersionRow:
        manifest = version.manifest
        return cls(
            ref=version.ref,
            profile=version.profile,
            version=version.version,
            status=version.status,
            current=current == version.version,
            parent_version=version.parent_version,
            base_model=version.base_model,
            base_fingerprint=version.base_fingerprint,
            path=str(version.path),
            created_at=manifest.created_at if manifest else None,
            run_id=manifest.run_id if manifest else None,
            metrics=dict(manifest.metrics) if manifest else {},
            gate=manifest.gate.dump() if manifest else {},
            serving=(
                {"vllm": manifest.serving.vllm.ok, "llama_cpp": manifest.serving.llama_cpp.ok}
                if manifest and manifest.serving
                else None
            ),
        )


def list_(
    profile: Annotated[str | None, typer.Option("--profile", help="Only this profile.", show_default=False)] = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Every registered version, oldest first; * marks each profile's current one. Version folders
    the store doesn't know are listed on stderr (``plora adapters adopt`` imports them)."""
    from pipeline.registry import current_versions, list_versions, unregistered
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        versions = list_versions(workspace, profile)
        currents = current_versions(workspace)
        unknown = unregistered(workspace, profile)
    rows = [VersionRow.of(version, currents.get(version.profile)) for version in versions]
    _report_unregistered(unknown)
    if json:
        print_json({"adapters": [asdict(row) for row in rows]})
        return
    if not rows:
        stdout.print("no adapters registered" + (f" for {escape(profile)}" if profile else ""))
        return
    table = Table("", "ref", "status", "parent", "eval loss", "serves on", "created", box=None)
    for row in rows:
        loss = row.metrics.get("eval_loss")
        table.add_row(
            "*" if row.current else "",
            row.ref,
            row.status,
            f"v{row.parent_version}" if row.parent_version else "-",
            f"{loss:.4f}" if isinstance(loss, int | float) else "-",
            _serves_on(row.serving),
            (row.created_at or "")[:19],
        )
    stdout.print(table)
    if any(row.serving is not None and not all(row.serving.values()) for row in rows):
        stdout.print("not servable somewhere: `plora adapters verify REF` says why")


def _serves_on(serving: dict[str, bool] | None) -> str:
    if serving is None:
        return "? (verify)"
    runtimes = [name for key, name in (("vllm", "vllm"), ("llama_cpp", "llama.cpp")) if serving.get(key)]
    return ", ".join(runtimes) if runtimes else "[red]none[/]"


def _report_unregistered(unknown: list[Any]) -> None:
    from flows.output import warn

    for folder in unknown:
        profile = folder.ref.split("@", 1)[0]
        what = (
            f"`plora adapters adopt {profile}` imports it"
            if not folder.problems
            else f"it can't be adopted: {'; '.join(folder.problems)}"
        )
        warn(f"{escape(str(folder.path))} is not in this store (kept); {escape(what)}")


def adopt(
    profile: Annotated[
        str | None, typer.Argument(help="Only this profile's folders (default: every profile).", show_default=False)
    ] = None,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Import version folders the store doesn't know (another or a restored store) back into it."""
    from pipeline.registry import adopt as adopt_folders
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        report = adopt_folders(workspace, profile)
    if json:
        print_json(asdict(report))
    else:
        adopted = ", ".join(report.adopted) or "nothing"
        stdout.print(f"adopted {escape(adopted)}")
        for profile_, ref in report.current.items():
            stdout.print(f"{escape(profile_)}: current is now {escape(ref)}")
        for refused in report.refused:
            stdout.print(f"  [yellow]not adopted[/] {escape(refused['ref'])}: {escape(refused['reason'])}")
    if report.refused:
        raise typer.Exit(1)


def show(ref: RefArgument, home: HomeOption = None, json: JsonOption = False) -> None:
    """A version's manifest: base, datasets, LoRA and training config, metrics and the gate decision."""
    from pipeline.registry import current_versions, resolve
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        version = resolve(workspace, ref)
        currents = current_versions(workspace)
    row = VersionRow.of(version, currents.get(version.profile))
    manifest = version.manifest
    if json:
        print_json({**asdict(row), "manifest": manifest.dump() if manifest is not None else {}})
        return
    stdout.print(f"[bold]{escape(version.ref)}[/] {version.status}" + (" (current)" if row.current else ""))
    stdout.print(f"path      {escape(str(version.path))}")
    stdout.print(f"parent    {'v' + str(version.parent_version) if version.parent_version else '-'}")
    stdout.print(f"base      {escape(version.base_model)} {version.base_fingerprint[:12]}")
    if manifest is None:
        stdout.print(f"manifest  unreadable; see `plora adapters verify {escape(version.ref)}`")
        return
    stdout.print(f"created   {manifest.created_at}, run {manifest.run_id or '-'}")
    snapshots = manifest.snapshots
    stdout.print("datasets  " + (", ".join(f"{k} {v[:12]}" for k, v in sorted(snapshots.items())) or "-"))
    for key, recorded in (("lora", manifest.lora), ("train", manifest.train), ("metrics", manifest.metrics)):
        values = {
            k: v for k, v in recorded.items() if v is not None and not (key == "metrics" and isinstance(v, dict | list))
        }  # nested: see --json
        stdout.print(f"{key:<9} " + (escape(", ".join(f"{k}={v}" for k, v in sorted(values.items()))) or "-"))
    gate = manifest.gate
    numbers = ", ".join(f"{k}={v}" for k, v in sorted(gate.numbers.items()))
    stdout.print(
        f"gate      {'accepted' if gate.accepted else 'rejected'}" + (f" ({escape(numbers)})" if numbers else "")
    )
    for reason in gate.reasons:
        stdout.print(f"          - {escape(str(reason))}")
    if manifest.composition:
        parts = ", ".join(f"{p.weight:g} x {p.ref}" for p in manifest.composition.components)
        stdout.print(f"combines  {escape(parts)} ({manifest.composition.combination_type})")


def verify(ref: RefArgument, home: HomeOption = None, json: JsonOption = False) -> None:
    """Check every file of a version against its manifest (exit 1 listing every bad file), and say
    whether vLLM and llama.cpp can serve it."""
    from pipeline.registry import serving_report
    from pipeline.registry import verify as verify_version
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        version = verify_version(workspace, ref)
        report, recorded = serving_report(workspace.home.root, version)
    files = list(version.require_manifest().files)
    serving = {**report.model_dump(mode="json"), "recorded": recorded}
    if json:
        print_json({"ref": version.ref, "ok": True, "files": files, "serving": serving})
        return
    stdout.print(f"{escape(version.ref)}: ok, {len(files)} files match plora.json")
    when = "recorded at registration" if recorded else "checked now (registered before plora recorded it)"
    stdout.print(f"serving ({when}):")
    for name, check in (("vLLM", report.vllm), ("llama.cpp", report.llama_cpp)):
        extra = check.model_extra or {}
        note = f" (--max-lora-rank {extra['max_lora_rank']})" if check.ok and extra.get("max_lora_rank") else ""
        stdout.print(f"  {name:<10} {'yes' + note if check.ok else 'no: ' + escape('; '.join(check.problems))}")


def promote(
    ref: RefArgument,
    force: Annotated[bool, typer.Option("--force", help="Also a version the eval gate rejected.")] = False,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Make a version its profile's current one (after verifying it)."""
    from pipeline.registry import promote as promote_version
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        version = promote_version(workspace, ref, force=force)
    if json:
        print_json({"profile": version.profile, "current": version.ref})
        return
    stdout.print(f"{escape(version.profile)}: current is now {escape(version.ref)}")


def rollback(
    profile: Annotated[str, typer.Argument(help="The profile.", show_default=False)],
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Move a profile's current pointer back to the newest accepted version below it."""
    from pipeline.registry import rollback as rollback_profile
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        version = rollback_profile(workspace, profile)
    if json:
        print_json({"profile": version.profile, "current": version.ref})
        return
    stdout.print(f"{escape(version.profile)}: current is now {escape(version.ref)}")


def export(
    ref: RefArgument,
    dest: Annotated[Path, typer.Argument(help="A new or empty folder.", show_default=False)],
    merged: Annotated[
        bool,
        typer.Option(
            "--merged",
            help="The base with the adapter merged into its weights (safetensors, or with --format gguf "
            "one GGUF model) instead of the adapter alone.",
        ),
    ] = False,
    format_: Annotated[
        str,
        typer.Option(
            "--format", help="peft (PEFT folder / transformers model) or gguf (llama.cpp, Ollama, LM Studio)."
        ),
    ] = "peft",
    for_: Annotated[
        str | None,
        typer.Option("--for", help="vllm: the folder vLLM's --lora-modules takes.", show_default=False),
    ] = None,
    dtype: Annotated[
        str, typer.Option("--dtype", help="Merged GGUF: weights the adapter changes as f16, q8_0 or f32.")
    ] = "f16",
    merge_into: Annotated[
        str,
        typer.Option(
            "--merge-into",
            help="Merged exports: full (the base's own weights) or nf4 (its NF4 round trip, what a QLoRA "
            "adapter was evaluated on; see docs/adapters.md).",
        ),
    ] = "full",
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Write a version as a PEFT folder, as GGUF for llama.cpp / Ollama, for vLLM, or merged into its base."""
    from pipeline.errors import UsageError
    from pipeline.registry import ExportFormat, MergeBase, export_record
    from pipeline.registry import export as export_version
    from pipeline.registry.gguf_merge import DTYPES
    from pipeline.workspace import open_workspace

    if format_ not in (ExportFormat.PEFT, ExportFormat.GGUF):
        raise UsageError(f"--format {format_!r}: expected peft or gguf (for vLLM: --for vllm)")
    if for_ is not None and for_ != ExportFormat.VLLM:
        raise UsageError(f"--for {for_!r}: expected vllm")
    if for_ is not None and format_ != ExportFormat.PEFT:
        raise UsageError("--for vllm and --format gguf exclude each other")
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if merge_into not in tuple(MergeBase):
        raise UsageError(f"--merge-into {merge_into!r}: expected full or nf4")
    fmt = ExportFormat(for_ or format_)
    with open_workspace(home, check_paths=False) as workspace:
        path = export_version(
            workspace, ref, dest, merged=merged, format=fmt, dtype=dtype, merge_into=MergeBase(merge_into)
        )
    record = export_record(path)
    merged_into = record.merged_into.value if record and record.merged_into else (merge_into if merged else None)
    if json:
        print_json(
            {
                "ref": ref,
                "path": str(path),
                "merged": merged,
                "format": fmt.value,
                "merged_into": merged_into,
                "export": record.model_dump(mode="json") if record else None,
            }
        )
        return
    what = "merged model" if merged else "adapter"
    into = f" (merged into the {merged_into} base weights)" if merged_into else ""
    stdout.print(f"wrote {what} {escape(ref)} as {fmt.value} to {escape(str(path))}{into}")
    instructions = path / "README.txt"
    if fmt is not ExportFormat.PEFT and instructions.is_file():
        stdout.print(escape(instructions.read_text(encoding="utf-8")))


def combine(
    refs: Annotated[list[str], typer.Argument(help="Two or more adapter refs.", show_default=False)],
    profile: Annotated[
        str, typer.Option("--profile", help="Register the result as a new version of this profile.", show_default=False)
    ],
    weight: Annotated[
        list[float] | None,
        typer.Option(
            "--weight",
            help="One per ref, in order (repeat it) (default: equal weights summing to 1).",
            show_default=False,
        ),
    ] = None,
    combination_type: Annotated[
        str, typer.Option("--type", help="cat (exact, rank = sum of ranks), linear or svd.")
    ] = "cat",
    promote_it: Annotated[bool, typer.Option("--promote", help="Make it the profile's current version.")] = False,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Register a weighted composition of adapters (PEFT add_weighted_adapter) as a new version."""
    from pipeline.registry import combine as combine_versions
    from pipeline.workspace import open_workspace

    weights = list(weight) if weight else [1.0 / len(refs)] * len(refs)
    with open_workspace(home, check_paths=False) as workspace:
        version = combine_versions(
            workspace, refs, weights, profile=profile, combination_type=combination_type, promote=promote_it
        )
    if json:
        print_json(asdict(VersionRow.of(version, version.version if promote_it else None)))
        return
    stdout.print(f"registered {escape(version.ref)}" + (" (current)" if promote_it else ""))
