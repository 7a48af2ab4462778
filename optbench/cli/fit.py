"""Tables that fit the terminal: columns are kept by priority until the width is used, never cut mid-number.

A results table read in a CI log or through a pipe is 80 columns wide. Rich would squeeze every column and
print `0.…`; here each column either fits whole or is left out (and named in the caption, with `--wide` to show
all). Names (tasks, configurations) may wrap; numbers never do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich import box
from rich.table import Table
from rich.text import Text

#: what one column costs beyond its text: padding on both sides and the SIMPLE_HEAD box's blank separator
PADDING = 3
#: a wrapping column (names) is given at least this width, or its whole content when shorter
MIN_WRAP = 16


@dataclass
class Column:
    header: str
    values: list[str] = field(default_factory=list)
    #: lower is kept first when the width runs out
    priority: int = 50
    wrap: bool = False
    justify: str = "right"

    def width(self) -> int:
        """Cells are rich markup (escaped names, styled verdicts): what counts is the width they print at."""
        longest = max([len(self.header), *(Text.from_markup(v).cell_len for v in self.values)])
        return min(longest, max(MIN_WRAP, len(self.header))) if self.wrap else longest


def fit(columns: list[Column], width: int | None, wide: bool = False) -> tuple[list[Column], list[Column]]:
    """(shown, hidden): the columns that fit `width` by priority, in their original order."""
    if wide or width is None:
        return list(columns), []
    budget = width - 1
    keep: set[int] = set()
    for i in sorted(range(len(columns)), key=lambda i: (columns[i].priority, i)):
        cost = columns[i].width() + PADDING
        if cost <= budget or not keep:
            keep.add(i)
            budget -= cost
    return [c for i, c in enumerate(columns) if i in keep], [c for i, c in enumerate(columns) if i not in keep]


def short_label(column: str) -> str:
    """'final_test_accuracy' -> 'test acc', 'val_loss' -> 'val loss': a metric's name as a narrow table shows it."""
    return (column.replace("final_", "").replace("_accuracy", " acc").replace("_loss", " loss")
            .replace("generalisation gap", "gen. gap").replace("_", " "))


def natural_width(columns: list[Column]) -> int:
    """The width at which every column shows whole: what `--wide` prints at, however narrow the terminal."""
    return sum(max(c.width(), max((Text.from_markup(v).cell_len for v in c.values), default=0)) + PADDING
               for c in columns) + 1


def fitted_table(columns: list[Column], width: int | None, title: str, caption: str = "",
                 wide: bool = False) -> Table:
    """A rich table of the columns that fit; the caption names the ones left out and how to see them."""
    shown, hidden = fit(columns, width, wide)
    if hidden:
        caption = (caption + " · " if caption else "") + (
            f"not shown at this width: {', '.join(c.header for c in hidden)} (--wide shows every column)")
    table = Table(title=title, caption=caption or None, title_justify="left", caption_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for c in shown:
        table.add_column(c.header, justify=c.justify, no_wrap=not c.wrap, overflow="fold",
                         min_width=min(c.width(), MIN_WRAP) if c.wrap else c.width())
    for i in range(len(columns[0].values) if columns else 0):
        table.add_row(*(c.values[i] for c in shown))
    return table
