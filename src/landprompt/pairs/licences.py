"""Photo licences: one canonical id per licence, and the ``--licence`` filter.

Canonical ids follow SPDX where one exists, version included when the source says it:
``CC-BY-2.0``, ``CC-BY-SA-4.0``, ``CC-BY-NC-ND-2.0``, ``CC0-1.0``. Others:

============================  =====================================================================
id                            meaning
============================  =====================================================================
``PDM-1.0``                   Creative Commons Public Domain Mark
``NO-KNOWN-COPYRIGHT``        Flickr "No known copyright restrictions" (The Commons)
``US-GOV-WORK``               United States Government Work
``EU-REUSE``                  (c) European Union, reuse authorised with acknowledgement of the source
                              (Commission Decision 2011/833/EU); LUCAS photos
``ARR``                       All rights reserved
``UNKNOWN``                   no or unrecognised licence
============================  =====================================================================

The *family* of an id is the id without its version (``CC-BY-SA-2.0`` -> ``CC-BY-SA``). A filter
(:class:`LicenceFilter`) accepts a licence when one of its terms matches the id or the family
(case-insensitive, ``*`` wildcards allowed), or names a group of :data:`LICENCE_GROUPS`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from landprompt.errors import BadInputError

UNKNOWN = "UNKNOWN"

FLICKR_LICENCES: Mapping[str, str] = MappingProxyType(
    {
        "0": "ARR",
        "1": "CC-BY-NC-SA-2.0",
        "2": "CC-BY-NC-2.0",
        "3": "CC-BY-NC-ND-2.0",
        "4": "CC-BY-2.0",
        "5": "CC-BY-SA-2.0",
        "6": "CC-BY-ND-2.0",
        "7": "NO-KNOWN-COPYRIGHT",
        "8": "US-GOV-WORK",
        "9": "CC0-1.0",
        "10": "PDM-1.0",
    }
)
"""Flickr's licence ids (``flickr.photos.licenses.getInfo``) 0-10; newer ids are resolved from their URL."""

_PUBLIC_DOMAIN = frozenset({"CC0", "PDM", "NO-KNOWN-COPYRIGHT", "US-GOV-WORK"})
LICENCE_GROUPS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "public-domain": _PUBLIC_DOMAIN,
        "attribution": _PUBLIC_DOMAIN | {"CC-BY", "EU-REUSE"},
        "open": _PUBLIC_DOMAIN | {"CC-BY", "CC-BY-SA", "EU-REUSE"},
    }
)
"""Named groups of licence families: ``public-domain`` (no conditions), ``attribution`` (+ CC-BY,
EU-REUSE: credit only), ``open`` (+ CC-BY-SA: commercial use and derivatives allowed)."""

_CC_KINDS = ("by", "by-sa", "by-nd", "by-nc", "by-nc-sa", "by-nc-nd")
_CC_URL = re.compile(r"creativecommons\.org/licenses/(?P<kind>[a-z-]+)/(?P<version>\d(?:\.\d)?)", re.I)
_CC_NAME = re.compile(
    r"^(?:cc[ -]?)?(?P<kind>by(?:-n[cd])?(?:-(?:sa|nd))?)(?:[ -](?P<version>\d\.\d))?$", re.I
)
_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "all rights reserved": "ARR",
        "attribution license": "CC-BY",
        "attribution-sharealike license": "CC-BY-SA",
        "attribution-noderivs license": "CC-BY-ND",
        "attribution-noncommercial license": "CC-BY-NC",
        "attribution-noncommercial-sharealike license": "CC-BY-NC-SA",
        "attribution-noncommercial-noderivs license": "CC-BY-NC-ND",
        "no known copyright restrictions": "NO-KNOWN-COPYRIGHT",
        "united states government work": "US-GOV-WORK",
        "public domain dedication (cc0)": "CC0-1.0",
        "cc0": "CC0-1.0",
        "public domain mark": "PDM-1.0",
        "public domain": "PDM-1.0",
    }
)
_CANONICAL = re.compile(
    r"^(?:CC-BY(?:-NC)?(?:-SA|-ND)?(?:-\d\.\d)?|CC0-1\.0|PDM-1\.0|NO-KNOWN-COPYRIGHT|US-GOV-WORK|EU-REUSE|ARR"
    r"|UNKNOWN)$"
)


def licence_from_url(url: str | None) -> str | None:
    """The canonical id of a licence URL (Creative Commons, Flickr Commons, US government), or None."""
    if not url:
        return None
    text = url.strip().lower()
    match = _CC_URL.search(text)
    if match and match["kind"] in _CC_KINDS:
        return f"CC-{match['kind'].upper()}-{match['version']}"
    if "creativecommons.org/publicdomain/zero" in text:
        return "CC0-1.0"
    if "creativecommons.org/publicdomain/mark" in text:
        return "PDM-1.0"
    if "flickr.com/commons/usage" in text:
        return "NO-KNOWN-COPYRIGHT"
    if "usa.gov" in text:
        return "US-GOV-WORK"
    return None


def normalise_licence(value: str | None, url: str | None = None) -> str:
    """The canonical id of a licence given by URL, Flickr/YFCC name, SPDX-like id or ``CC BY 4.0``.

    Args:
        value: A name (``"Attribution License"``), an id (``"CC-BY-4.0"``, ``"cc by-sa 2.0"``) or a URL.
        url: The licence URL when the source gives one; it wins over the name (it carries the version).

    Returns:
        A canonical id (see the module docstring); :data:`UNKNOWN` when nothing is recognised.
    """
    for candidate in (url, value):
        found = licence_from_url(candidate)
        if found:
            return found
    if not value or not value.strip():
        return UNKNOWN
    text = " ".join(value.strip().split())
    if text.upper() in ("CC0", "CC0-1.0"):
        return "CC0-1.0"
    if _CANONICAL.match(text.upper()):
        return text.upper()
    if text.lower() in _NAMES:
        return _NAMES[text.lower()]
    match = _CC_NAME.match(text.replace("_", "-"))
    if match:
        version = f"-{match['version']}" if match["version"] else ""
        return f"CC-{match['kind'].upper()}{version}"
    return UNKNOWN


def licence_family(licence: str) -> str:
    """The licence id without its version: ``CC-BY-SA-2.0`` -> ``CC-BY-SA``, ``CC0-1.0`` -> ``CC0``."""
    return re.sub(r"-\d\.\d$", "", licence.upper())


@dataclass(frozen=True)
class LicenceFilter:
    """Which licences an ingest keeps.

    Args:
        terms: Canonical ids, families, ``*`` patterns (``CC-BY*``) or group names of
            :data:`LICENCE_GROUPS`, e.g. ``("CC-BY", "CC0", "public-domain")``.
    """

    terms: tuple[str, ...]

    @classmethod
    def parse(cls, values: Iterable[str] | None) -> LicenceFilter | None:
        """A filter from ``--licence`` values (comma-separated lists allowed); None when empty.

        Raises:
            BadInputError: for a term that can match no licence id.
        """
        terms = tuple(t.strip() for v in values or () for t in v.split(",") if t.strip())
        if not terms:
            return None
        for term in terms:
            if term.lower() in LICENCE_GROUPS or "*" in term:
                continue
            if (
                normalise_licence(term) == UNKNOWN
                and term.upper() != UNKNOWN
                and term.upper() not in _families()
            ):
                groups = ", ".join(LICENCE_GROUPS)
                raise BadInputError(
                    f"unknown licence {term!r}: give an id or family such as CC-BY, CC-BY-SA-4.0, CC0, "
                    f"PDM, EU-REUSE, a pattern such as 'CC-BY*', or a group ({groups})"
                )
        return cls(terms)

    def accepts(self, licence: str) -> bool:
        """Whether a canonical licence id passes the filter."""
        lid, family = licence.upper(), licence_family(licence)
        for term in self.terms:
            group = LICENCE_GROUPS.get(term.lower())
            if group is not None:
                if family in group:
                    return True
                continue
            pattern = term.upper()
            if fnmatch.fnmatchcase(lid, pattern) or fnmatch.fnmatchcase(family, pattern):
                return True
            if normalise_licence(term) == lid:
                return True
        return False


def _families() -> frozenset[str]:
    kinds = {f"CC-{k.upper()}" for k in _CC_KINDS}
    return frozenset(kinds | {"CC0", "PDM", "NO-KNOWN-COPYRIGHT", "US-GOV-WORK", "EU-REUSE", "ARR"})
