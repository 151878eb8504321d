"""Sentinel-1/2 inputs: bands, STAC and local sources, SCL cloud masks, monthly composites.

Modules: ``bands`` (specs, units, normalisation), ``masks`` (SCL), ``composite`` (monthly medians and the
output layout), ``aoi`` (grid checks), ``source`` (the source interface), ``stac`` (search + odc-stac
load), ``local`` (GeoTIFF stacks and Zarr/NetCDF scene cubes), ``chips`` (chip time series at many points,
for the paired data), ``items`` (a Parquet table of STAC items searched offline). They are imported explicitly
(``from landprompt.eo.stac import StacSource``) so that importing this package stays cheap and does not
pull in odc-stac or pystac-client.
"""
