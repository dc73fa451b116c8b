"""Figures: periodic-table heatmaps of per-element values (needs matplotlib, the ``plots`` extra)."""

from collections.abc import Mapping


def periodic_table_position(symbol: str) -> tuple[int, int]:
    """``(row, column)`` of an element in the usual 18-column layout; f-block rows 8 and 9.

    Examples
    --------
    >>> periodic_table_position("Fe"), periodic_table_position("La"), periodic_table_position("U")
    ((3, 7), (8, 2), (9, 5))
    """
    from pymatgen.core.periodic_table import Element

    element = Element(symbol)
    if element.is_lanthanoid or element.is_actinoid:
        first = 57 if element.is_lanthanoid else 89
        return (8 if element.is_lanthanoid else 9), 2 + element.Z - first
    return element.row - 1, element.group - 1


def periodic_table_heatmap(
    values: Mapping[str, float],
    title: str,
    path: str,
    label: str = "",
    counts: Mapping[str, int] | None = None,
    cmap: str = "coolwarm",
) -> None:
    """Draw ``values`` (element symbol -> number) on a periodic table and save it to ``path``.

    Elements without a value are drawn blank; ``counts`` (how many data behind each value)
    are printed under the value. When values have both signs the colour scale is symmetric
    about zero (equal colours for equal magnitudes), so a small negative value stays pale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize
    from pymatgen.core.periodic_table import Element

    drawable = {Element.from_Z(z).symbol for z in range(1, 104)}
    unknown = sorted(set(values) - drawable)
    if unknown:
        raise ValueError(f"not element symbols of Z 1-103, cannot be drawn: {unknown}")
    if not values:
        raise ValueError("no values to draw")
    numbers = list(values.values())
    low, high = min(numbers), max(numbers)
    reach = max(abs(low), abs(high))
    norm = Normalize(-reach, reach) if low < 0 < high else Normalize(low, high)
    colours = plt.get_cmap(cmap)
    figure, axes = plt.subplots(figsize=(11, 6.2), dpi=150)
    for z in range(1, 104):
        symbol = Element.from_Z(z).symbol
        row, column = periodic_table_position(symbol)
        value = values.get(symbol)
        face = colours(norm(value)) if value is not None else (0.96, 0.96, 0.96)
        axes.add_patch(
            plt.Rectangle((column, -row), 0.94, 0.94, facecolor=face, edgecolor="grey", lw=0.4)
        )
        axes.text(
            column + 0.47,
            -row + 0.62,
            symbol,
            ha="center",
            va="center",
            fontsize=8,
            color="black" if value is not None else "grey",
        )
        if value is not None:
            axes.text(
                column + 0.47, -row + 0.3, f"{value:.2f}", ha="center", va="center", fontsize=5.5
            )
            if counts is not None and symbol in counts:
                axes.text(
                    column + 0.47,
                    -row + 0.1,
                    f"n={counts[symbol]}",
                    ha="center",
                    va="center",
                    fontsize=4.5,
                    color="dimgrey",
                )
    axes.set_xlim(-0.2, 18.2)
    axes.set_ylim(-9.2, 1.1)
    axes.set_aspect("equal")
    axes.axis("off")
    axes.set_title(title, fontsize=11)
    mappable = plt.cm.ScalarMappable(norm=norm, cmap=colours)
    figure.colorbar(mappable, ax=axes, fraction=0.025, pad=0.01, label=label)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def screening_plot(ranked, path: str, top: int = 20, units: str = "") -> None:
    """The distribution of predicted values of screened candidates, and the ``top`` ranked first
    (with the ensemble's σ as error bars when the table has a ``std`` column)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = ranked.head(top)
    figure, axes = plt.subplots(1, 2, figsize=(10, max(3.5, 0.22 * len(best) + 1.2)), dpi=150)
    axes[0].hist(ranked.prediction, bins=min(80, max(10, len(ranked) // 5)), color="steelblue")
    axes[0].set_xlabel(f"predicted value {units}".strip())
    axes[0].set_ylabel("candidates")
    axes[0].set_title(f"{len(ranked):,} screened candidates", fontsize=9)
    positions = range(len(best))[::-1]
    axes[1].barh(
        list(positions),
        best.prediction,
        xerr=best.get("std"),
        color="seagreen",
        error_kw={"lw": 0.8},
    )
    axes[1].set_yticks(
        list(positions),
        [
            f"{f} ({x})" if "X" in best else f
            for f, x in zip(best.formula, best.get("X", best.formula))
        ],
        fontsize=7,
    )
    axes[1].set_xlabel(f"prediction {units} (± σ)".strip())
    axes[1].set_title(f"the {len(best)} ranked first", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
