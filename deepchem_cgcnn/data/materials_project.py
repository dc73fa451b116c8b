"""Materials Project data: summary documents through mp-api, and the CGCNN paper's id lists.

:func:`query_summary` asks the Materials Project summary endpoint for structures and
properties of given material ids (with mp-api's ``MPRester``) and can keep the result in a
local cache, so a second call with the same ids and fields needs neither the network nor an
API key. :func:`cgcnn_paper_ids` downloads the lists of MP ids published with the original
CGCNN code (txie-93/cgcnn, MIT). :data:`MP_FIELDS` and :func:`task_values` turn summary fields
into this project's task labels.

>>> mp_fields(["formation_energy", "log10_k_vrh"])
['formation_energy_per_atom', 'bulk_modulus']
>>> frame = pd.DataFrame({"bulk_modulus": [{"voigt": 101.0, "reuss": 99.0, "vrh": 100.0}, None]})
>>> task_values(frame, "log10_k_vrh")
array([ 2., nan])
"""

import dataclasses
import gzip
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from deepchem_cgcnn.data.download import RemoteFile, fetch

__all__ = [
    "CGCNN_PAPER_ID_LISTS",
    "MP_FIELDS",
    "MissingAPIKeyError",
    "cgcnn_paper_ids",
    "mp_fields",
    "query_summary",
    "task_values",
]

logger = logging.getLogger(__name__)

API_KEY_VARIABLE = "MP_API_KEY"
API_KEY_PAGE = "https://next-gen.materialsproject.org/api"
INSTALL_HINT = 'pip install "deepchem-cgcnn[mp]"'
ALWAYS_FETCHED = ("material_id", "structure")
_CACHE_FORMAT = 1


class MissingAPIKeyError(RuntimeError):
    """No Materials Project API key was given and none is set in ``MP_API_KEY``."""


# ---------------------------------------------------------------- summary queries
def query_summary(
    material_ids: Sequence[str] | None,
    fields: Sequence[str],
    *,
    api_key: str | None = None,
    endpoint: str | None = None,
    cache_path: str | None = None,
    chunk_size: int = 1000,
) -> pd.DataFrame:
    """Structures and summary fields of Materials Project materials, optionally cached.

    Parameters
    ----------
    material_ids: sequence of str or None
        MP ids such as ``"mp-149"`` (duplicates are dropped, order is kept). ``None`` asks
        for every current (non-deprecated) material in the database, which pages through
        the whole summary collection (well over 100,000 documents; allowed only with
        explicit ``fields``). The query then carries ``deprecated=False``, which also keeps
        mp-api on its paginated REST path: a query without any criterion would instead
        download the complete summary dataset (several GB, every field) into
        ``~/mp_datasets``. materialsproject/api#964 (open) reports that such a
        ``deprecated=False`` query once returned fewer materials than are current; pass
        explicit ids when completeness matters.
    fields: sequence of str
        Summary fields to return besides ``material_id`` and ``structure``, e.g.
        ``mp_fields(["band_gap"])`` or ``["formation_energy_per_atom"]``.
    api_key: str, optional
        Materials Project API key; default: the ``MP_API_KEY`` environment variable. Not
        needed when a matching cache exists.
    endpoint: str, optional
        API root URL; default: mp-api's (``https://api.materialsproject.org/``, or the
        ``MP_API_ENDPOINT`` environment variable).
    cache_path: str, optional
        A ``.json.gz`` file. If it holds the result of a query for the same ids and fields,
        it is returned without any network call; otherwise the query runs and its result is
        written there atomically. An unreadable cache is logged and replaced.
    chunk_size: int, default 1000
        Ids per request (and documents per page).

    Returns
    -------
    pandas.DataFrame
        Columns ``material_id`` (str), ``structure`` (pymatgen ``Structure.as_dict()``
        form) and each requested field, one row per material found, in the order of
        ``material_ids``. ``frame.attrs["missing_ids"]`` lists the requested ids the API
        did not return (e.g. deprecated or removed materials); a warning gives their count.

    Raises
    ------
    MissingAPIKeyError
        A query is needed and there is no API key.
    ImportError
        mp-api is not installed.
    """
    ids = None if material_ids is None else _unique(material_ids)
    fields = [fields] if isinstance(fields, str) else list(fields)
    if ids is None and not fields:
        raise ValueError(
            "material_ids=None downloads every material in the Materials Project; "
            "name the fields you need (fields=[...]) to do that"
        )
    columns = _unique([*ALWAYS_FETCHED, *fields])
    if ids is not None and not ids:
        return _frame_of([], columns, [])
    key = _cache_key(ids, columns)
    records = _read_cache(cache_path, key) if cache_path is not None else None
    if records is None:
        records = _search_summary(
            ids, columns, _resolve_api_key(api_key, cache_path), endpoint, chunk_size
        )
        if cache_path is not None:
            _write_cache(cache_path, {"format": _CACHE_FORMAT, "key": key, "records": records})
    else:
        logger.info("using the cached Materials Project query in %s", cache_path)
    records, missing_ids = _order_and_find_missing(records, ids)
    if missing_ids:
        logger.warning(
            "%d of %d requested material ids were not returned by the Materials "
            "Project (deprecated or removed?); see frame.attrs['missing_ids']",
            len(missing_ids),
            len(ids or []),
        )
    return _frame_of(records, columns, missing_ids)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(str(item) for item in items))


def _resolve_api_key(api_key: str | None, cache_path: str | None) -> str:
    api_key = api_key or os.environ.get(API_KEY_VARIABLE)
    if api_key:
        return api_key
    message = (
        f"a Materials Project API key is needed: pass api_key=... or set the "
        f"{API_KEY_VARIABLE} environment variable (get a key at {API_KEY_PAGE})"
    )
    if cache_path is not None:
        message += (
            f". A cached result of the same query at {cache_path} would be used "
            f"offline, without a key, but there is none yet"
        )
    raise MissingAPIKeyError(message)


def _import_mprester():
    try:
        from mp_api.client import MPRester
    except ImportError as error:
        raise ImportError(f"querying the Materials Project needs mp-api: {INSTALL_HINT}") from error
    return MPRester


def _search_summary(
    ids: list[str] | None, columns: list[str], api_key: str, endpoint: str | None, chunk_size: int
) -> list[dict[str, Any]]:
    MPRester = _import_mprester()
    with MPRester(
        api_key,
        endpoint=endpoint,
        use_document_model=False,
        mute_progress_bars=True,
        notify_db_version=False,
    ) as rester:
        summary = rester.materials.summary
        if ids is None:
            documents = summary.search(deprecated=False, fields=columns, chunk_size=chunk_size)
        else:
            documents = [
                document
                for chunk in _chunks(ids, chunk_size)
                for document in summary.search(
                    material_ids=chunk, fields=columns, chunk_size=chunk_size
                )
            ]
    return [_plain_record(document, columns) for document in documents]


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    if size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _plain_record(document: Any, columns: list[str]) -> dict[str, Any]:
    """A summary document as JSON-ready values: id as str, structure as its dict."""
    if not isinstance(document, dict):  # a document model, should mp-api return one
        document = {column: getattr(document, column, None) for column in columns}
    record = {column: document.get(column) for column in columns}
    record["material_id"] = str(record["material_id"])
    if hasattr(record["structure"], "as_dict"):
        record["structure"] = record["structure"].as_dict()
    return record


def _order_and_find_missing(records: list[dict[str, Any]], ids: list[str] | None):
    """Records in the order of ``ids`` (API order if None), and the ids with no record."""
    if ids is None:
        return records, []
    by_id = {record["material_id"]: record for record in records}
    return ([by_id[i] for i in ids if i in by_id], [i for i in ids if i not in by_id])


def _frame_of(
    records: list[dict[str, Any]], columns: list[str], missing_ids: list[str]
) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame["material_id"] = frame["material_id"].astype(str)
    frame.attrs["missing_ids"] = list(missing_ids)
    return frame


# ---------------------------------------------------------------- the query cache
def _cache_key(ids: list[str] | None, columns: list[str]) -> dict[str, Any]:
    if ids is None:
        return {"ids": "all", "fields": sorted(columns)}
    id_digest = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()
    return {"ids": {"count": len(ids), "sha256": id_digest}, "fields": sorted(columns)}


def _read_cache(path: str, key: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The records cached at ``path`` if they were written for the query ``key``, else None."""
    if not os.path.exists(path):
        return None
    try:
        payload = _load_cache_payload(path)
    except (OSError, EOFError, zlib.error, ValueError) as error:
        logger.warning(
            "ignoring unreadable cache %s (%s: %s); querying again",
            path,
            type(error).__name__,
            error,
        )
        return None
    if payload["format"] != _CACHE_FORMAT or payload["key"] != key:
        logger.info("cache %s holds a different query; querying again", path)
        return None
    return payload["records"]


def _load_cache_payload(path: str) -> dict[str, Any]:
    """The cache file's content; ValueError if it is not what :func:`_write_cache` writes."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        payload = json.load(handle)
    if not isinstance(payload, dict) or not {"format", "key", "records"} <= set(payload):
        raise ValueError("not a cache object with format, key and records")
    records = payload["records"]
    if not isinstance(records, list) or not all(
        isinstance(record, dict) and "material_id" in record for record in records
    ):
        raise ValueError("records are not a list of documents with a material_id")
    return payload


def _write_cache(path: str, payload: dict[str, Any]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as raw, gzip.open(raw, "wt", encoding="utf-8") as handle:
            json.dump(payload, handle, default=_json_default)
        os.replace(temporary, path)
    except BaseException:
        os.remove(temporary)
        raise


def _json_default(value: Any) -> Any:
    """JSON form of values json cannot write: pymatgen objects, numpy scalars, ids."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


# ---------------------------------------------------------------- task labels
MP_FIELDS: dict[str, str] = {
    "formation_energy": "formation_energy_per_atom",
    "energy_per_atom": "energy_per_atom",
    "band_gap": "band_gap",
    "fermi_energy": "efermi",
    "is_metal": "is_metal",
    "k_vrh": "bulk_modulus",
    "g_vrh": "shear_modulus",
    "log10_k_vrh": "bulk_modulus",
    "log10_g_vrh": "shear_modulus",
    "poisson_ratio": "homogeneous_poisson",
}
"""This project's task name -> the Materials Project summary field it is computed from.

Energies in eV/atom (``formation_energy``, ``energy_per_atom``), ``band_gap`` and
``fermi_energy`` in eV, ``is_metal`` as 1.0/0.0. ``bulk_modulus`` and ``shear_modulus`` are
dicts of ``voigt``/``reuss``/``vrh`` averages in GPa: ``k_vrh``/``g_vrh`` take the VRH value,
``log10_k_vrh``/``log10_g_vrh`` its base-10 log, as the CGCNN paper and Matbench use."""


def mp_fields(tasks: Sequence[str]) -> list[str]:
    """The summary fields needed for ``tasks``, without repeats, in order."""
    unknown = [task for task in tasks if task not in MP_FIELDS]
    if unknown:
        raise KeyError(
            f"no Materials Project field known for {unknown}; known tasks: {', '.join(MP_FIELDS)}"
        )
    return _unique(MP_FIELDS[task] for task in tasks)


def task_values(frame: pd.DataFrame, task: str) -> np.ndarray:
    """One float label per row of a :func:`query_summary` frame (NaN where there is none).

    Parameters
    ----------
    frame: pandas.DataFrame
        Holds the column ``MP_FIELDS[task]``.
    task: str
        A key of :data:`MP_FIELDS`.

    Returns
    -------
    numpy.ndarray
        ``float64`` values; log10 of a non-positive modulus is NaN.
    """
    (field,) = mp_fields([task])
    convert = _TASK_CONVERTERS.get(task, _as_float)
    return np.array([convert(value) for value in frame[field]], dtype=float)


def _as_float(value: Any) -> float:
    if value is None:
        return math.nan
    return float(value)


def _vrh(value: Any) -> float:
    if not isinstance(value, dict):
        return math.nan
    return _as_float(value.get("vrh"))


def _log10_vrh(value: Any) -> float:
    modulus = _vrh(value)
    return math.log10(modulus) if modulus > 0 else math.nan


_TASK_CONVERTERS: dict[str, Callable[[Any], float]] = {
    "k_vrh": _vrh,
    "g_vrh": _vrh,
    "log10_k_vrh": _log10_vrh,
    "log10_g_vrh": _log10_vrh,
}


# ---------------------------------------------------------------- the CGCNN paper's id lists
_MP_ID = re.compile(r"^mp-\d+$")


@dataclasses.dataclass(frozen=True)
class IdListCheck:
    """Content check for an MP id list: exactly ``count`` non-empty lines, each ``mp-<digits>``.

    Called with a path, raises ``ValueError`` saying what is wrong (a truncated download
    has too few lines; a corrupt one, a line that is not an id).
    """

    count: int

    def __call__(self, path: str) -> None:
        ids = _read_id_lines(path)
        if len(ids) != self.count:
            raise ValueError(f"holds {len(ids)} ids, expected {self.count}")
        for number, material_id in enumerate(ids, start=1):
            if not _MP_ID.match(material_id):
                raise ValueError(
                    f"id {number} is {material_id[:40]!r}, not of the form mp-<digits>"
                )


def _read_id_lines(path: str) -> list[str]:
    with open(path, "rb") as handle:
        text = handle.read().decode("utf-8")  # a UnicodeDecodeError is a ValueError
    return [line.strip() for line in text.splitlines() if line.strip()]


def _id_list(count: int, url: str) -> RemoteFile:
    return RemoteFile(url, f"cgcnn-mp-ids-{count}.csv", validate=IdListCheck(count))


_CGCNN_RAW = "https://raw.githubusercontent.com/txie-93/cgcnn/"

CGCNN_PAPER_ID_LISTS: dict[int, RemoteFile] = {
    46744: _id_list(
        46744,
        _CGCNN_RAW + "6231ef38c95dbf7358922f7d19069b2339356c2e/data/material-data/mp-ids-46744.csv",
    ),
    27430: _id_list(
        27430,
        _CGCNN_RAW + "3ba39488bb0b8b8e2ba422bf599e3efc1b302725/data/material-ids/mp-ids-27430.csv",
    ),
    3402: _id_list(
        3402,
        _CGCNN_RAW + "6231ef38c95dbf7358922f7d19069b2339356c2e/data/material-data/mp-ids-3402.csv",
    ),
}
"""The MP id lists published with the original CGCNN code, by length, at pinned commits."""


def cgcnn_paper_ids(
    n: int = 46744, data_dir: str | None = None, *, url: str | None = None, **fetch_kwargs: Any
) -> list[str]:
    """The Materials Project ids of a CGCNN paper (Xie & Grossman 2018) data set, in file order.

    The lists come from the original code's repository (txie-93/cgcnn, MIT), whose
    ``data/material-data/README.md`` says only that these CSV files "include the materials
    IDs of the crystals we used in our paper" and that MP data have changed since. No
    checksum is published, so a download is accepted only if it holds exactly ``n`` lines of
    the form ``mp-<digits>``.

    * 46,744: the formation energy, absolute energy, Fermi energy and metal/semiconductor
      data (the paper's Table 1 trains on 28,046 = 60 % of them).
    * 3,402: the elastic data (bulk and shear moduli, Poisson ratio; 2,041 = 60 % in Table 1).
    * 27,430: published with the original code (in an earlier ``data/material-ids/``
      folder) without a description; its size matches the paper's band-gap set (16,458
      training crystals = 60 % of 27,430).

    Parameters
    ----------
    n: int, default 46744
        Which list: a key of :data:`CGCNN_PAPER_ID_LISTS`.
    data_dir: str, optional
        Where the list is kept; default ``~/.cache/deepchem-cgcnn``.
    url: str, optional
        Download from this URL instead (a mirror); the content check is the same.
    **fetch_kwargs
        Passed to :func:`deepchem_cgcnn.data.download.fetch` (``timeout``, ``retries``,
        ``backoff``, ``offline``).

    Returns
    -------
    list of str
        ``n`` ids such as ``"mp-571420"``.

    Raises
    ------
    deepchem_cgcnn.data.download.DownloadError
        The list is not available locally and could not be downloaded intact.
    """
    if n not in CGCNN_PAPER_ID_LISTS:
        raise ValueError(
            f"no CGCNN id list of {n} ids; available: "
            f"{', '.join(str(k) for k in CGCNN_PAPER_ID_LISTS)}"
        )
    remote = CGCNN_PAPER_ID_LISTS[n]
    if url is not None:
        remote = dataclasses.replace(remote, url=url)
    if data_dir is None:
        data_dir = os.path.join(os.path.expanduser("~"), ".cache", "deepchem-cgcnn")
    return _read_id_lines(fetch(remote, data_dir, **fetch_kwargs))
