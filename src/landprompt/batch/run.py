"""Running a batch: :func:`plan` expands it into jobs and :func:`run_jobs` makes the outputs not made yet.

Every output is written atomically, so a file that exists is complete: a re-run skips finished jobs and
writes only the outputs a job lacks. Jobs run here, one after the other, or on a Dask cluster.

Example:
    >>> spec = load_jobs("examples/batch_maps.yaml")  # doctest: +SKIP
    >>> run_jobs(spec, scheduler="local").summary()  # doctest: +SKIP
    '6 done, 0 skipped, 0 failed'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from landprompt.batch.jobs import KINDS, Job
from landprompt.batch.spec import KIND_KEYS, JobSpec
from landprompt.distributed import run_each
from landprompt.errors import LandpromptError
from landprompt.files import slugify
from landprompt.progress import progress_bar

#: Threads of the one-worker Dask cluster ``scheduler="local"`` starts in this process.
LOCAL_THREADS = min(4, os.cpu_count() or 1)


def plan(spec: JobSpec) -> list[Job]:
    """The jobs of a batch: per area and concept (area by area) for maps and change maps, else per concept.

    A map's output folder is its area's; an indicator's or a validation's is named after its input file.
    """
    if spec.kind in KIND_KEYS["areas"]:
        groups = [(slugify(area.name), area.name, area.bbox) for area in spec.regions]
    else:
        source = cast(Path, spec.units or spec.points)
        groups = [(slugify(source.stem) or spec.kind, source.name, None)]
    return [KINDS[spec.kind](spec, concept, *group) for group in groups for concept in spec.concepts]


@dataclass
class JobResult:
    """What one job did: its key, and the error that stopped it (``None``: its outputs are written)."""

    key: str
    error: str | None = None


@dataclass
class JobReport:
    """Outcome of :func:`run_jobs`: job keys (``<area>/<concept-slug>``) done, skipped and failed."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether no job failed."""
        return not self.failed

    def add(self, result: JobResult) -> None:
        """Record a job's result."""
        if result.error is None:
            self.done.append(result.key)
        else:
            self.failed[result.key] = result.error

    def summary(self) -> str:
        """One line: ``"4 done, 2 skipped, 0 failed"``."""
        return f"{len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed"


def run_jobs(
    spec: JobSpec, scheduler: str | None = None, progress: bool = True, *, overwrite: bool = False
) -> JobReport:
    """Make every output of a batch that is not made yet.

    Jobs whose outputs all exist are skipped; a job with some outputs writes only the missing ones. A
    failing job is reported and the others go on.

    Args:
        spec: The batch, from :func:`~landprompt.batch.spec.load_jobs`.
        scheduler: ``None`` runs the jobs here, one after the other. ``"local"`` starts a Dask
            ``LocalCluster`` in this process, one worker with :data:`LOCAL_THREADS` threads sharing one
            CLIP model (starts in milliseconds; map reads, CLIP, softmax and GDAL release the GIL).
            Anything else is the address of a running Dask scheduler (``tcp://host:8786``), e.g. of
            ``dask scheduler`` plus ``dask worker --nworkers N`` processes on one or more machines.
        progress: Show a progress bar.
        overwrite: Rewrite every output, even existing ones.

    Returns:
        The report of jobs done, skipped and failed (with their error messages).
    """
    jobs = plan(spec)
    pending: list[Job] = []
    report = JobReport()
    for job in jobs:  # one pass, each job's files checked once
        if overwrite or job.missing():
            pending.append(job)
        else:
            report.skipped.append(job.key)
    if not pending:
        return report
    with progress_bar("maps", len(pending), enabled=progress) as advance:
        results = run_each(
            run_job, pending, scheduler, threads=LOCAL_THREADS, on_error=_failed, overwrite=overwrite
        )
        for result in results:
            report.add(result)
            advance(note=f"{result.key} {'[red]failed[/red]' if result.error else 'done'}")
    return report


def run_job(job: Job, overwrite: bool = False) -> JobResult:
    """Run one job: compute its product and write its missing outputs (all of them with ``overwrite``).

    Never raises: an error is returned in :attr:`JobResult.error`, so one failure does not stop a batch.
    """
    todo = job.outputs if overwrite else job.missing()
    try:
        job.make(todo)
    except Exception as exc:  # caught here, a Dask worker logs no traceback for it
        return _failed(job, exc)
    return JobResult(job.key)


def _failed(job: Job, exc: Exception) -> JobResult:
    """The result of a job that raised, or whose task itself died (its worker was killed).

    The error is one line: the message of user errors, the type and message of others.
    """
    text = " ".join(str(exc).split())
    return JobResult(
        job.key, error=text if isinstance(exc, LandpromptError) else f"{type(exc).__name__}: {text}"
    )
