"""Batch runs of the query and evaluate stages from a YAML file.

:mod:`~landprompt.batch.spec` checks the file (pydantic models), :mod:`~landprompt.batch.jobs` holds one job
class per kind and :mod:`~landprompt.batch.run` plans, runs and reports. The batch runner sits above the
stages it drives: only the command line and user code import it.
"""
