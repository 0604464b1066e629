"""``plora generate``: a reply from a profile's adapter on the base model (pipeline.generate)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from flows.options import HomeOption, JsonOption
from flows.output import print_json, stdout


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)


def generate(
    prompt: Annotated[str, typer.Argument(help="The user message.", show_default=False)],
    profile: Annotated[
        str | None,
        typer.Option("--profile", help="The profile (default: the first in plora.toml).", show_default=False),
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="This version instead of the current one.", show_default=False)
    ] = None,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, max=4096, help="Most tokens to generate.")
    ] = 64,
    compare_base: Annotated[
        bool, typer.Option("--compare-base", help="Also print the base model's own reply, to compare.")
    ] = False,
    home: HomeOption = None,
    json: JsonOption = False,
) -> None:
    """Reply to PROMPT with a profile's adapter on the base model."""
    from pipeline.generate import load_profiles
    from pipeline.workspace import open_workspace

    with open_workspace(home, check_paths=False) as workspace:
        if profile is None:
            profile, _ = workspace.config.profile(None)
        loaded = load_profiles(workspace, [profile], versions={profile: version} if version is not None else None)
        reply = loaded.generate(prompt, max_new_tokens=max_new_tokens)
        base_reply = loaded.generate(prompt, max_new_tokens=max_new_tokens, base_only=True) if compare_base else None
    ref = loaded.versions[profile].ref
    if json:
        print_json(
            {"ref": ref, "prompt": prompt, "reply": reply, **({"base_reply": base_reply} if compare_base else {})}
        )
        return
    if base_reply is None:
        sys.stdout.write(reply + "\n")
        return
    stdout.print(f"[bold]{escape(prompt)}[/]")
    stdout.print(f"  [cyan]base[/]     {escape(base_reply.strip())}")
    stdout.print(f"  [green]{escape(ref)}[/]  {escape(reply.strip())}")
