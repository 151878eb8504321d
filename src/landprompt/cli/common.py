"""Shared pieces of the command line: consoles, the error-to-one-line group, common options."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from landprompt.errors import LandpromptError

if TYPE_CHECKING:
    from landprompt.embedder.clip import ClipModel

console = Console()
err_console = Console(stderr=True)


class _OneLineErrors:
    """Mixin for click commands: a :class:`LandpromptError` becomes one line on stderr and its exit code."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command; a user error ends it with one line and a non-zero exit code."""
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except LandpromptError as exc:
            message = " ".join(str(exc).split())
            err_console.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


class LandpromptGroup(_OneLineErrors, TyperGroup):
    """Root command group whose user errors end in one line (see :class:`_OneLineErrors`)."""


class LandpromptCommand(_OneLineErrors, TyperCommand):
    """A stand-alone command (an app of one command) whose user errors end in one line."""


def sub_app(help_text: str) -> typer.Typer:
    """A stage's sub-command group."""
    return typer.Typer(help=help_text, no_args_is_help=True)


ClipOption = Annotated[str, typer.Option("--clip", help="open_clip model name, e.g. ViT-B-32.")]
CubeArgument = Annotated[Path, typer.Argument(help="Embedding cube (.zarr).")]
PromptArgument = Annotated[str, typer.Argument(help="The concept in plain words, e.g. 'olive groves'.")]
BBoxOption = Annotated[
    str | None, typer.Option("--bbox", help="Lon/lat window 'minlon,minlat,maxlon,maxlat' or a GeoJSON file.")
]
QueryClipOption = Annotated[
    str | None, typer.Option("--clip", help="open_clip model name (default: the one named by the cube).")
]
StyleOption = Annotated[str, typer.Option("--style", help="Prompt template style: ground, satellite, ...")]
PretrainedOption = Annotated[
    str | None,
    typer.Option(
        "--pretrained",
        help="open_clip pretrained tag (e.g. laion2b_s34b_b79k) or a local weights file; "
        "omit for random weights.",
    ),
]


def clip_or_none(name: str | None, pretrained: str | None) -> ClipModel | None:
    """Load the CLIP model named on the command line, or None to use the cube's."""
    if name is None:
        return None
    from landprompt.embedder.clip import load_clip

    return load_clip(name, pretrained)
