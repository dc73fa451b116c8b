"""``dc.molnet``-style loaders for the CGCNN paper's properties.

The names that exist in ``dc.molnet`` (``load_mp_formation_energy``,
``load_mp_metallicity``, ``load_perovskite``) keep their name, signature, task
names and default transformers, and read DeepChem's own files from ``data_dir``
without network access; the difference is the default featurizer
(:class:`~deepchem_cgcnn.CGCNNFeaturizer`) and the default split (60/20/20, seed 123,
the paper's). Each returns ``(tasks, (train, valid, test), transformers)`` with a
``.summary`` of what was dropped and why.

Every loader also takes ``source=`` (any source :class:`MaterialsProjectLoader`
reads: a Matbench name, ``"mp_api"``, a CSV/JSON file, a CIF folder, ...) and the
loader's other keyword arguments (``n_jobs``, ``label_columns``, ``material_ids``,
``api_key``, ``timeout``, ``offline``, ...).
"""

from collections.abc import Sequence
from typing import Any

from deepchem_cgcnn.data.loader import LoadResult, MaterialsProjectLoader
from deepchem_cgcnn.featurizer import CGCNNFeaturizer

DEFAULT_SOURCES = {
    "load_mp_formation_energy": "deepchem_mp_formation_energy",
    "load_mp_band_gap": "matbench_mp_gap",
    "load_mp_metallicity": "deepchem_mp_is_metal",
    "load_mp_fermi_energy": "mp_api",
    "load_mp_bulk_modulus": "matbench_log_kvrh",
    "load_mp_shear_modulus": "matbench_log_gvrh",
    "load_perovskite": "deepchem_perovskite",
}
"""The source each loader reads when no ``source=`` is given."""


def _load(
    function: str,
    name: str,
    tasks: list[str],
    featurizer,
    splitter,
    transformers,
    reload: bool,
    data_dir: str | None,
    save_dir: str | None,
    **kwargs,
) -> LoadResult:
    source = kwargs.pop("source", DEFAULT_SOURCES[function])
    kwargs.setdefault("name", name)
    loader = MaterialsProjectLoader(
        source=source,
        tasks=tasks,
        featurizer=featurizer or CGCNNFeaturizer(),
        splitter=splitter,
        transformers=transformers,
        data_dir=data_dir,
        save_dir=save_dir,
        reload=reload,
        **kwargs,
    )
    return loader.load()


_PARAMETERS = """
    Parameters
    ----------
    featurizer: dc.feat.Featurizer, optional
        Default :class:`~deepchem_cgcnn.CGCNNFeaturizer` (radius 8 Å, 12 neighbours).
    splitter: dc.splits.Splitter, str or None, default "random"
        ``"random"`` (60/20/20, seed 123), ``"cgcnn"`` (the original code's split),
        ``"stratified"``, ``"composition"``, a DeepChem splitter, or None.
    transformers: list, default {transformers}
        ``dc.molnet`` transformer names or TransformerGenerators, fitted on train.
    reload: bool, default True
        Reuse the featurized cache (keyed by source checksum and every setting).
    data_dir: str, optional
        Where the raw file is looked for first and downloaded to.
    save_dir: str, optional
        Where the featurized datasets are cached.
    **kwargs
        ``source`` (default {source!r}) and any :class:`MaterialsProjectLoader` argument.

    Returns
    -------
    LoadResult
        ``(tasks, (train, valid, test), transformers)`` with ``.summary``.
"""


def _document(default_source: str, transformers: Sequence[str]):
    def decorate(function):
        function.__doc__ = function.__doc__.replace(
            "{parameters}",
            _PARAMETERS.format(source=default_source, transformers=list(transformers)).strip(),
        )
        return function

    return decorate


@_document(DEFAULT_SOURCES["load_mp_formation_energy"], ["normalization"])
def load_mp_formation_energy(
    featurizer=None,
    splitter: Any | str | None = "random",
    transformers: Sequence[Any] = ("normalization",),
    reload: bool = True,
    data_dir: str | None = None,
    save_dir: str | None = None,
    **kwargs,
) -> LoadResult:
    """Formation energy per atom (eV/atom) of Materials Project crystals (task ``formation_energy``).

    Default source: DeepChem's ``mp_formation_energy.tar.gz`` (132,752 crystals, the
    data of Matbench's ``matbench_mp_e_form``); ``source="matbench_mp_e_form"`` reads
    Matbench's checksummed copy, ``source="../shared/datasets/mp_cgcnn.csv.gz"`` a
    local table (its ``formation_energy_per_atom`` column), ``source="mp_api"`` the
    live MP for the CGCNN paper's 46,744 ids.

    {parameters}

    Examples
    --------
    >>> from deepchem_cgcnn import load_mp_formation_energy  # doctest: +SKIP
    >>> tasks, (train, valid, test), transformers = load_mp_formation_energy()  # doctest: +SKIP
    """
    return _load(
        "load_mp_formation_energy",
        "mp_formation_energy",
        ["formation_energy"],
        featurizer,
        splitter,
        transformers,
        reload,
        data_dir,
        save_dir,
        **kwargs,
    )


@_document(DEFAULT_SOURCES["load_mp_band_gap"], ["normalization"])
def load_mp_band_gap(
    featurizer=None,
    splitter: Any | str | None = "random",
    transformers: Sequence[Any] = ("normalization",),
    reload: bool = True,
    data_dir: str | None = None,
    save_dir: str | None = None,
    **kwargs,
) -> LoadResult:
    """PBE band gap (eV) of Materials Project crystals, metals included (task ``band_gap``).

    Default source: Matbench's ``matbench_mp_gap`` (106,113 crystals). The paper
    reported band gaps of non-metals only: filter the training split on ``y > 0``
    for that protocol.

    {parameters}
    """
    return _load(
        "load_mp_band_gap",
        "mp_band_gap",
        ["band_gap"],
        featurizer,
        splitter,
        transformers,
        reload,
        data_dir,
        save_dir,
        **kwargs,
    )


@_document(DEFAULT_SOURCES["load_mp_metallicity"], ["balancing"])
def load_mp_metallicity(
    featurizer=None,
    splitter: Any | str | None = "random",
    transformers: Sequence[Any] = ("balancing",),
    reload: bool = True,
    data_dir: str | None = None,
    save_dir: str | None = None,
    **kwargs,
) -> LoadResult:
    """Metal (1) or non-metal (0) for Materials Project crystals (task ``is_metal``).

    Default source: DeepChem's ``mp_is_metal.tar.gz`` (106,113 crystals, the data of
    ``matbench_mp_is_metal``). Use ``splitter="stratified"`` to keep the class balance
    in every split.

    {parameters}
    """
    return _load(
        "load_mp_metallicity",
        "mp_is_metal",
        ["is_metal"],
        featurizer,
        splitter,
        transformers,
        reload,
        data_dir,
        save_dir,
        **kwargs,
    )


@_document(DEFAULT_SOURCES["load_mp_fermi_energy"], ["normalization"])
def load_mp_fermi_energy(
    featurizer=None,
    splitter: Any | str | None = "random",
    transformers: Sequence[Any] = ("normalization",),
    reload: bool = True,
    data_dir: str | None = None,
    save_dir: str | None = None,
    **kwargs,
) -> LoadResult:
    """Fermi energy (eV) of Materials Project crystals (task ``fermi_energy``).

    No public file holds it, so the default source is the live Materials Project
    for the CGCNN paper's 46,744 ids (an API key: ``api_key=`` or ``MP_API_KEY``),
    cached in ``data_dir`` after the first call; a local table with an ``efermi``
    column (``source="../shared/datasets/mp_cgcnn.csv.gz"``) works offline.

    {parameters}
    """
    return _load(
        "load_mp_fermi_energy",
        "mp_fermi_energy",
        ["fermi_energy"],
        featurizer,
        splitter,
        transformers,
        reload,
        data_dir,
        save_dir,
        **kwargs,
    )


@_document(DEFAULT_SOURCES["load_mp_bulk_modulus"], ["normalization"])
def load_mp_bulk_modulus(
    featurizer=None,
    splitter: Any | str | None = "random",
    transformers: Sequence[Any] = ("normalization",),
    reload: bool = True,
    data_dir: str | None = None,
    save_dir: str | None = None,
    **kwargs,
) -> LoadResult:
    """log10 of the VRH bulk modulus (log10 GPa) of MP crystals (task ``log10_k_vrh``).

    Default source: Matbench's ``matbench_log_kvrh`` (10,987 crystals).

    {parameters}
    """
    return _load(
        "load_mp_bulk_modulus",
        "mp_bulk_modulus",
        ["log10_k_vrh"],
        featurizer,
        splitter,
        transformers,
        reload,
        data_dir,
        save_dir,
        **kwargs,
    )


@_document(DEFAULT_SOURCES["load_mp_shear_modulus"], ["normalization"])
def load_mp_shear_modulus(
    featurizer=None,
    splitter: Any | str | None = "random",
    transformers: Sequence[Any] = ("normalization",),
    reload: bool = True,
    data_dir: str | None = None,
    save_dir: str | None = None,
    **kwargs,
) -> LoadResult:
    """log10 of the VRH shear modulus (log10 GPa) of MP crystals (task ``log10_g_vrh``).

    Default source: Matbench's ``matbench_log_gvrh`` (10,987 crystals).

    {parameters}
    """
    return _load(
        "load_mp_shear_modulus",
        "mp_shear_modulus",
        ["log10_g_vrh"],
        featurizer,
        splitter,
        transformers,
        reload,
        data_dir,
        save_dir,
        **kwargs,
    )


@_document(DEFAULT_SOURCES["load_perovskite"], ["normalization"])
def load_perovskite(
    featurizer=None,
    splitter: Any | str | None = "random",
    transformers: Sequence[Any] = ("normalization",),
    reload: bool = True,
    data_dir: str | None = None,
    save_dir: str | None = None,
    **kwargs,
) -> LoadResult:
    """Heat of formation (eV per 5-atom cell) of 18,928 cubic perovskites (task ``formation_energy``).

    Default source: DeepChem's ``perovskite.tar.gz`` (Castelli et al. 2012, the data
    of ``matbench_perovskites``). For the Castelli table in ``../shared`` pass
    ``source=".../castelli_perovskites.csv.gz", label_columns={"formation_energy": "heat_all"}``.

    {parameters}
    """
    return _load(
        "load_perovskite",
        "perovskite",
        ["formation_energy"],
        featurizer,
        splitter,
        transformers,
        reload,
        data_dir,
        save_dir,
        **kwargs,
    )
