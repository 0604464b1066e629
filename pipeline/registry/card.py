"""The model card (``README.md``) of a version: what it is and what it was trained on, as counts
(never content)."""

from __future__ import annotations

import json

from pipeline.registry.manifest import MANIFEST, AdapterManifest


def model_card(manifest: AdapterManifest, *, merged: bool = False) -> str:
    """The README.md of a version (``merged``: of its merged export)."""
    ref = manifest.ref
    base = manifest.base_model
    gate = manifest.gate
    lines = [
        "---",
        "library_name: " + ("transformers" if merged else "peft"),
        "tags: [plora, lora, personal]",
        "---",
        "",
        f"# {ref}" + (" merged into its base model" if merged else ""),
        "",
        f"Personal LoRA adapter of profile `{manifest.profile}`, version {manifest.version}"
        + (f" (continues v{manifest.parent_version})" if manifest.parent_version else " (from scratch)")
        + f", registered {manifest.created_at} by plora {manifest.plora_version}.",
        f"Eval gate: **{manifest.status.value}**" + (": " + "; ".join(gate.reasons) if gate.reasons else "") + ".",
        "",
        "## Base model",
        "",
        f"`{base.name}`, fingerprint `{base.fingerprint}`. plora refuses to load this adapter on any other base.",
        "",
    ]
    composition = manifest.composition
    if composition:
        lines += [
            "## Composition",
            "",
            f"Weighted composition (`{composition.combination_type}`) of:",
            "",
            "| adapter | weight |",
            "|---|---|",
        ]
        lines += [f"| {part.ref} | {part.weight:g} |" for part in composition.components]
        lines.append("")
    lines += ["## Trained on", ""]
    if manifest.sources:
        lines += ["| source | kind | count |", "|---|---|---|"]
        for source, kinds in sorted(manifest.sources.items()):
            for kind, count in sorted(kinds.items()):
                lines.append(f"| {source} | {kind} | {count} |")
    elif composition:
        lines.append("See the components' model cards.")
    else:
        lines.append("Not recorded.")
    if manifest.snapshots:
        listed = ", ".join(f"{kind} `{fp[:12]}`" for kind, fp in sorted(manifest.snapshots.items()))
        lines += ["", f"Dataset snapshots: {listed}"]
    lines += ["", "## LoRA", "", "```json", json.dumps(manifest.lora, indent=2, sort_keys=True), "```"]
    numbers = gate.numbers
    if manifest.metrics or numbers:
        lines += ["", "## Evaluation", "", "| metric | value |", "|---|---|"]
        lines += [
            f"| {key} | {value} |"
            for key, value in sorted({**manifest.metrics, **numbers}.items())
            if value is not None and not isinstance(value, dict | list)
        ]
    lines += _measures(manifest.metrics.get("eval"))
    lines += ["", f"Checksums of every file are in `{MANIFEST}`; check them with `plora adapters verify {ref}`.", ""]
    return "\n".join(lines)


_MEASURES = (
    ("eval loss (the profile's eval split)", "eval_loss", "{:.4f}"),
    ("general-text loss (forgetting probe)", "general_loss", "{:.4f}"),
    ("preference accuracy (held-out pairs)", "preference_accuracy", "{:.2f}"),
)


def _measures(evaluated: object) -> list[str]:
    """The eval measures of the base, the previous adapter and this one, side by side."""
    if not isinstance(evaluated, dict):
        return []
    models = [name for name in ("base", "previous", "new") if isinstance(evaluated.get(name), dict)]
    if not models:
        return []
    heading = {"base": "base model", "previous": "previous adapter", "new": "this adapter"}
    lines = ["", "| measure | " + " | ".join(heading[m] for m in models) + " |", "|---|" + "---|" * len(models)]
    for label, key, fmt in _MEASURES:
        values = [evaluated[m].get(key) for m in models]
        if any(isinstance(v, int | float) for v in values):
            shown = [fmt.format(v) if isinstance(v, int | float) else "-" for v in values]
            lines.append(f"| {label} | " + " | ".join(shown) + " |")
    return lines
