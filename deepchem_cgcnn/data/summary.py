"""What a load kept and what it dropped, and why: nothing is lost silently."""

from dataclasses import asdict, dataclass, field

UNREADABLE = "unreadable row"
MISSING_LABEL = "missing label"
NON_FINITE_LABEL = "non-finite label"
DUPLICATE_ID = "duplicate id"
FEATURIZATION_FAILED = "featurization failed"
OUTSIDE_SPLIT = "outside the split"
EXCLUDED_BY_QUERY = "excluded by query"


@dataclass
class LoadSummary:
    """The account of one load: rows in, rows out, and each dropped row's id and reason.

    Attributes
    ----------
    source: str
        Where the rows came from.
    sha256: str
        Checksum of the source's content (what the cache is keyed by).
    n_rows: int
        Rows the source held, including those that could not be read.
    n_loaded: int
        Rows in the returned dataset(s).
    dropped: dict
        Reason (``"missing label"``, ``"duplicate id"``, ``"featurization failed"``,
        ...) -> list of ``(id, detail)``.
    split_sizes: dict
        ``{"train": n, "valid": n, "test": n}`` (or ``{"all": n}`` without a splitter).
    partially_labelled: int
        Rows kept with some (not all) task labels missing; those get weight 0.
    from_cache: bool
        Whether the datasets were reloaded from the featurized cache.
    seconds: float
        Wall time of the load.

    Examples
    --------
    >>> summary = LoadSummary("demo", n_rows=3, n_loaded=1,
    ...                       dropped={"duplicate id": [("mp-1", "second copy")],
    ...                                "missing label": [("mp-2", "NaN")]})
    >>> summary.counts()
    {'duplicate id': 1, 'missing label': 1}
    >>> summary.dropped_ids("missing label")
    ['mp-2']
    >>> print(summary)
    demo: loaded 1 of 3 rows; dropped 2: 1 duplicate id, 1 missing label
    """

    source: str
    sha256: str = ""
    n_rows: int = 0
    n_loaded: int = 0
    dropped: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    split_sizes: dict[str, int] = field(default_factory=dict)
    partially_labelled: int = 0
    from_cache: bool = False
    seconds: float = 0.0

    def drop(self, reason: str, rows: list[tuple[str, str]]) -> None:
        """Record ``(id, detail)`` rows dropped for ``reason``."""
        if rows:
            self.dropped.setdefault(reason, []).extend((str(i), str(d)) for i, d in rows)

    def counts(self) -> dict[str, int]:
        """Dropped rows per reason."""
        return {reason: len(rows) for reason, rows in self.dropped.items()}

    @property
    def n_dropped(self) -> int:
        return sum(self.counts().values())

    def dropped_ids(self, reason: str | None = None) -> list[str]:
        """Ids of the dropped rows, for one reason or all."""
        return [i for r, rows in self.dropped.items() if reason in (None, r) for i, _ in rows]

    def __str__(self) -> str:
        text = f"{self.source}: loaded {self.n_loaded} of {self.n_rows} rows"
        if self.n_dropped:
            parts = ", ".join(f"{n} {reason}" for reason, n in self.counts().items())
            text += f"; dropped {self.n_dropped}: {parts}"
        if self.partially_labelled:
            text += f"; {self.partially_labelled} rows lack some labels (weight 0 there)"
        return text

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LoadSummary":
        data = dict(data)
        data["dropped"] = {r: [tuple(row) for row in rows] for r, rows in data["dropped"].items()}
        return cls(**data)
