"""Header-only LUCAS tables of the survey years 2006, 2009, 2012, 2015, 2018 and 2022.

Built from the documented column lists, not invented:

- 2006-2018: the harmonised LUCAS database (d'Andrimont et al. 2020, ``lucas_harmo_uf``), each field
  with the survey years its documentation lists ("Years: ..."; as published with the Earth Engine copy
  ``JRC/LUCAS_HARMO/THLOC/V1``). ``th_lat`` / ``th_long`` are the theoretical point of every year.
- 2022: the LUCAS 2022 table's ``POINT_*`` / ``SURVEY_*`` names (Earth Engine ``JRC/LUCAS/THLOC/V1/2022``),
  whose location is ``POINT_LAT`` / ``POINT_LON`` and which has no ``year`` column.

:func:`write_headers` writes ``lucas_<year>.csv`` files with the header line only.
"""

from __future__ import annotations

from pathlib import Path

ALL = (2006, 2009, 2012, 2015, 2018)
FROM_2009 = (2009, 2012, 2015, 2018)
FROM_2012 = (2012, 2015, 2018)
FROM_2015 = (2015, 2018)
ONLY_2018 = (2018,)
TO_2015 = (2009, 2012, 2015)

#: Harmonised column -> the survey years that record it.
HARMONISED: dict[str, tuple[int, ...]] = {
    **dict.fromkeys(
        [
            "id",
            "point_id",
            "year",
            "nuts0",
            "nuts1",
            "nuts2",
            "th_lat",
            "th_long",
            "survey_date",
            "gps_proj",
            "gps_prec",
            "gps_lat",
            "gps_ew",
            "gps_long",
            "obs_dist",
            "obs_direct",
            "obs_type",
            "letter_group",
            "lc1",
            "lc1_label",
            "lc2",
            "lc2_label",
            "lu1",
            "lu1_label",
            "lu2",
            "lu2_label",
            "photo_point",
            "photo_north",
            "photo_south",
            "photo_east",
            "photo_west",
            "revisit",
            "th_gps_dist",
            "file_path_gisco_north",
            "file_path_gisco_south",
            "file_path_gisco_east",
            "file_path_gisco_west",
            "file_path_gisco_point",
        ],
        ALL,
    ),
    **dict.fromkeys(
        [
            "gps_altitude",
            "lc1_spec",
            "lc1_spec_label",
            "lc1_perc",
            "lc2_spec",
            "lc2_spec_label",
            "lc2_perc",
            "parcel_area_ha",
            "tree_height_survey",
            "feature_width",
            "grazing",
            "wm",
            "soil_stones_perc",
        ],
        FROM_2009,
    ),
    **dict.fromkeys(["tree_height_maturity", "special_status", "lc_lu_special_remark"], FROM_2012),
    **dict.fromkeys(
        [
            "office_pi",
            "lu1_type",
            "lu1_type_label",
            "lu1_perc",
            "lu2_type",
            "lu2_type_label",
            "lu2_perc",
            *(f"inspire_plcc{i}" for i in range(1, 9)),
        ],
        FROM_2015,
    ),
    **dict.fromkeys(
        [
            "nuts3",
            "ex_ante",
            "car_latitude",
            "car_ew",
            "car_longitude",
            "lm_stone_walls",
            "crop_residues",
            "lm_grass_margins",
            "cprn_cando",
            "cprn_lc",
            "cprn_lc_label",
            "cprn_lc1n",
            "cprnc_lc1e",
            "cprnc_lc1s",
            "cprnc_lc1w",
            "cprn_urban",
            "cprn_impervious_perc",
            "eunis_complex",
            "grassland_sample",
            "grass_cando",
            "erosion_cando",
            "bio_sample",
            "soil_bio_taken",
            "standard_sample",
            "soil_std_taken",
        ],
        ONLY_2018,
    ),
    **dict.fromkeys(["wm_source", "wm_type", "wm_delivery"], (2009,)),
    **dict.fromkeys(["soil_taken", "soil_crop", "transect"], TO_2015),
}

#: The 2022 table's columns (a documented subset: identification, location and the survey fields).
COLUMNS_2022: tuple[str, ...] = (
    "POINT_ID",
    "POINT_NUTS0",
    "POINT_NUTS1",
    "POINT_NUTS2",
    "POINT_NUTS3",
    "POINT_LAT",
    "POINT_LON",
    "POINT_ALTITUDE",
    "POINT_EX_ANTE",
    "SURVEY_DATE",
    "SURVEY_OBS_TYPE",
    "SURVEY_GPS_PROJ",
    "SURVEY_GPS_ALTITUDE",
    "SURVEY_GPS_PREC",
    "SURVEY_OBS_DIST",
    "SURVEY_OBS_DIRECT",
    "SURVEY_PARCEL_AREA_HA",
    "SURVEY_LC1",
    "SURVEY_LC1_SPEC",
    "SURVEY_LC1_PERC",
    "SURVEY_LC2",
    "SURVEY_LC2_SPEC",
    "SURVEY_LC2_PERC",
    "SURVEY_TREE_HEIGHT_SURVEY",
    "SURVEY_TREE_HEIGHT_MATURITY",
    "SURVEY_FEATURE_WIDTH",
    "SURVEY_LU1",
    "SURVEY_LU1_TYPE",
    "SURVEY_LU1_PERC",
    "SURVEY_LU2",
    "SURVEY_LU2_TYPE",
    "SURVEY_LU2_PERC",
    "SURVEY_GRAZING",
    "SURVEY_SPECIAL_STATUS",
    "SURVEY_LC_LU_SPECIAL_REMARK",
    *(f"SURVEY_INSPIRE_PLCC{i}" for i in range(1, 8)),
    "SURVEY_WM",
    "SURVEY_WM_TYPE",
    "SURVEY_WM_SOURCE",
    "SURVEY_WM_DELIVERY",
    "SURVEY_SOIL_STD_TAKEN",
    "SURVEY_LM_HEDGE",
    "SURVEY_SOIL_STONES_PERC",
    "SURVEY_LM_STONE_WALLS",
    "SURVEY_LM_GRASS_MARGINS",
    "SURVEY_CPRN_URBAN",
    "SURVEY_CPRN_CANDO",
    "SURVEY_CPRN_LC",
    "SURVEY_LM_CROP_RESID",
    "SURVEY_GPS_LAT",
    "SURVEY_GPS_LONG",
    "photo_north",
    "photo_south",
    "photo_east",
    "photo_west",
    "photo_point",
)

YEARS = (*ALL, 2022)


def columns(year: int) -> list[str]:
    """The documented columns of a survey year's table."""
    if year == 2022:
        return list(COLUMNS_2022)
    return [name for name, years in HARMONISED.items() if year in years]


def write_headers(folder: Path) -> dict[int, Path]:
    """Write ``lucas_<year>.csv`` (header only) for every survey year; returns year -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for year in YEARS:
        paths[year] = folder / f"lucas_{year}.csv"
        paths[year].write_text(",".join(columns(year)) + "\n")
    return paths
