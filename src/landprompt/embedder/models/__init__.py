"""Satellite time-series encoders (Presto-compatible) and their weight loaders."""
