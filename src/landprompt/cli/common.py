"""Shared pieces of the command line: consoles, the error-to-one-line group, common options."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from typer._click.exceptions import BadParameter, ClickException, MissingParameter
from typer.core import TyperCommand, TyperGroup

from landprompt.cli.boundary import debug_enabled, user_error
from landprompt.errors import BadInputError

if TYPE_CHECKING:
    import xarray as xr

    from landprompt.embedder.clip import ClipModel
    from landprompt.query.session import Session

console = Console()
err_console = Console(stderr=True)


class _OneLineErrors:
    """Mixin for click commands: a user error becomes one line on stderr and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command; a user error ends it with one line and a non-zero exit code.

        The one error boundary of the command line (:mod:`landprompt.cli.boundary`): project errors and
        the I/O and format errors a user can cause become one line; a bug keeps its traceback, and
        ``--debug`` (or ``LANDPROMPT_DEBUG=1``) shows the traceback of every error.
        """
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except Exception as exc:
            if isinstance(exc, BadParameter) and not isinstance(exc, MissingParameter):
                # a value outside a Literal's choices or a min=/max= bound: one line, exit 2
                err_console.print(
                    f"[bold red]error:[/bold red] {exc.format_message()}", highlight=False, soft_wrap=True
                )
                raise typer.Exit(BadInputError.exit_code) from None
            if isinstance(exc, ClickException | typer.Exit | typer.Abort):
                raise
            mapped = user_error(exc)
            if mapped is None or debug_enabled(ctx):
                raise
            err_console.print(f"[bold red]error:[/bold red] {mapped[0]}", highlight=False, soft_wrap=True)
            raise typer.Exit(mapped[1]) from None


class LandpromptGroup(_OneLineErrors, TyperGroup):
    """Root command group whose user errors end in one line (see :class:`_OneLineErrors`)."""


class LandpromptCommand(_OneLineErrors, TyperCommand):
    """A stand-alone command (an app of one command) whose user errors end in one line."""


def sub_app(help_text: str) -> typer.Typer:
    """A stage's sub-command group."""
    return typer.Typer(help=help_text, no_args_is_help=True)


def clip_option(note: str = "") -> Any:
    """The ``--clip`` option (an open_clip model name); ``note`` (what is used without it) ends its help."""
    return typer.Option(
        "--clip", help="open_clip model name, e.g. ViT-B-32" + (f" ({note})." if note else ".")
    )


def pretrained_option(note: str = "", *, random: bool = True) -> Any:
    """The ``--pretrained`` option (an open_clip tag or weights file); ``note`` ends its help.

    Args:
        note: What is used without it, or where it applies.
        random: Whether the command takes ``none`` (:data:`RANDOM_WEIGHTS`) for random weights.
    """
    return typer.Option(
        "--pretrained",
        help="open_clip pretrained tag (e.g. laion2b_s34b_b79k) or a local weights file"
        + ("; 'none' for random weights (testing only)" if random else "")
        + (f"; {note}." if note else "."),
    )


#: Help of every bbox option or argument.
BBOX_HELP = "Lon/lat window 'minlon,minlat,maxlon,maxlat' or a GeoJSON file."


def bbox_option(*aliases: str) -> Any:
    """The ``--bbox`` option (``aliases`` such as ``--aoi`` name it too)."""
    return typer.Option(*aliases, "--bbox", help=BBOX_HELP)


ClipOption = Annotated[str, clip_option()]
ZarrFormatOption = Annotated[
    int,
    typer.Option(
        "--zarr-format",
        min=2,
        max=3,
        help="Cube layout: 3 (zstd, CRC32C-checked chunks) or 2 (zlib chunks that GDAL 3.10 and QGIS open "
        'as ZARR:"cube.zarr":/embedding).',
    ),
]
CubeArgument = Annotated[Path, typer.Argument(help="Embedding cube (.zarr).")]
CubesArgument = Annotated[
    Path, typer.Argument(help="Embedding cube (.zarr), or a folder of cube shards (*.zarr in it).")
]
PromptArgument = Annotated[str, typer.Argument(help="The concept in plain words, e.g. 'olive groves'.")]
BBoxOption = Annotated[str | None, bbox_option()]
BBoxArgument = Annotated[str, typer.Argument(help=BBOX_HELP)]
BatchSizeOption = Annotated[
    int, typer.Option("--batch-size", min=1, help="Pixels or patches per forward pass.")
]
QueryClipOption = Annotated[str | None, clip_option("default: the one named by the cube")]
StyleOption = Annotated[str, typer.Option("--style", help="Prompt template style: ground, satellite, ...")]
PretrainedOption = Annotated[str | None, pretrained_option("default: the tag the cube records")]
#: ``--pretrained`` of a command with no cube to take the tag from.
RequiredPretrainedOption = Annotated[str | None, pretrained_option("required, no default")]
#: The choices of the library's ``Literal`` types that options take (``embedder.cube.CubeDtype``,
#: ``query.maps.write_cog``'s dtype, ``calibration.Method``), named here so that the command line starts
#: without zarr or xarray; ``tests/test_cli.py`` keeps them equal.
CubeDtype = Literal["fp16", "int8"]
MapDtype = Literal["float32", "uint8"]
FitMethod = Literal["platt", "isotonic"]
#: ``embedder.run.BASES``, ``eo.l2a.L2A_OFFSET_CHOICES``, ``evaluate.zeroshot.SCORE_NORMS`` and the LUCAS
#: coordinate choices of ``evaluate.concepts`` (kept equal by the same test).
Basis = Literal["auto", "none", "head", "pca"]
L2aOffset = Literal["auto", "0", "-1000"]
ScoreNorm = Literal["none", "class-mean"]
Coordinates = Literal["th", "gps"]
#: ``--pretrained`` value that asks for a seeded random initialisation.
RANDOM_WEIGHTS = "none"


def clip_or_none(
    name: str | None, pretrained: str | None, cube: Path | None = None, *, device: str | None = None
) -> ClipModel | None:
    """Load the CLIP model named on the command line, or None to use the cube's.

    Random weights only when asked for (``--pretrained none``); ``--clip NAME`` without
    ``--pretrained`` takes the tag the cube records for that model, or is an error. Every command
    that ends up with random weights prints a warning line.

    Raises:
        BadInputError: If ``--clip`` names a model without weights and the cube records none for it,
            or a model of another embedding width than the cube.
    """
    from landprompt.embedder.recorded import (  # no torch: a cached prompt needs no text tower
        brings_own_weights,
        recorded_clip,
    )

    ds = _single_cube(cube)
    recorded = None if ds is None else recorded_clip(ds.attrs)
    if name is None:
        if recorded is not None and not recorded[1] and not brings_own_weights(recorded[0]):
            warn_random(recorded[0])
        return None
    if pretrained is None and recorded is not None and recorded[0] == name and recorded[1]:
        pretrained = recorded[1]
    why = "" if ds is None else "the cube records none for it"
    model = named_clip(name, pretrained, device=device, why=why)
    if ds is not None:
        from landprompt.checks import same_width

        same_width(model, ds, cube or "")  # before any scoring or output
    return model


def query_session(cube: Path, name: str | None, pretrained: str | None) -> Session:
    """The query session of a cube or a folder of shards, with the CLIP model of ``--clip``/``--pretrained``.

    Without ``--clip`` the text tower is the model the cube (the shards) names, loaded when a prompt needs
    it; with it, the model is checked against the (first) shard as :func:`clip_or_none` checks a cube.
    """
    from landprompt.query.session import cube_paths, open_session

    return open_session(cube, clip_or_none(name, pretrained, cube_paths(cube)[0]))


def named_clip(
    name: str,
    pretrained: str | None,
    *,
    device: str | None = None,
    default: str | None = None,
    why: str = "",
    warn: bool = True,
) -> ClipModel:
    """Load the CLIP model of ``--clip NAME --pretrained TAG|FILE|none``: the one way every command does.

    Args:
        name: The ``--clip`` model name.
        pretrained: The ``--pretrained`` value; ``none`` (:data:`RANDOM_WEIGHTS`) gives random weights.
        device: Torch device (None: CUDA when available).
        default: What a command documents for a missing ``--pretrained`` (None: it is an error).
        why: Why there is no default, added to the error (e.g. what the cube records).
        warn: Print the random-weights warning line (off where random weights are the point).

    An ``hf-hub:org/repo`` or ``local-dir:/folder`` name brings its own weights: it takes no
    ``--pretrained`` (and no default).

    Raises:
        BadInputError: If ``--pretrained`` is missing and the command has no default for it, or is
            given for a name that brings its own weights.
    """
    from landprompt.embedder.clip import load_clip
    from landprompt.embedder.recorded import brings_own_weights

    if brings_own_weights(name):
        return load_clip(name, pretrained, device)  # refuses any --pretrained, none included
    pretrained = default if pretrained is None else pretrained
    if pretrained is None:
        raise BadInputError(
            f"--clip {name} needs --pretrained TAG|FILE|none"
            + (f" ({why})" if why else "")
            + f": a tag of the model, a weights file, or --pretrained {RANDOM_WEIGHTS} for random weights "
            "(tests only)"
        )
    random = pretrained.lower() == RANDOM_WEIGHTS
    if random and warn:
        warn_random(name)
    return load_clip(name, None if random else pretrained, device)


def check_outputs(*paths: Path | None, folder: bool = False) -> None:
    """Check, before any work, that each output path (None: not asked for) can be written."""
    from landprompt.files import require_writable

    for path in paths:
        if path is not None:
            require_writable(path, folder=folder)


def warn_random(name: str) -> None:
    """Print the warning line of a command that runs CLIP with random weights."""
    err_console.print(
        f"[bold yellow]warning:[/bold yellow] CLIP {name} has RANDOM weights: maps and rankings mean nothing",
        highlight=False,
        soft_wrap=True,
    )


def _single_cube(cube: Path | None) -> xr.Dataset | None:
    """The cube at ``cube``; None for no path or no cube (a folder of shards, checked when read).

    Raises:
        DamagedCubeError: If it is a damaged cube.
    """
    if cube is None:
        return None
    from landprompt.embedder.cube import open_cube
    from landprompt.errors import DamagedCubeError, NotACubeError

    try:
        return open_cube(cube)
    except DamagedCubeError:
        raise
    except NotACubeError:
        return None
