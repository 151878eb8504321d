"""Batch runs of the query and evaluate stages from a YAML file (:mod:`landprompt.batch.jobs`).

The batch runner sits above the stages it drives: only the command line and user code import it.
Compatibility: it moved from ``landprompt.query.jobs``; import ``landprompt.batch.jobs`` instead (no
alias is left in ``query``, which must not import the stages above it).
"""
