"""The loop every kind's builder runs: a document's rows from the builder's ``rows_of``, what was cut
or dropped counted in one ``Tally``, a progress tick per document, and a chat-template failure turned
into a DatasetError naming the document."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pipeline.datasets.common import Row, Tally
from pipeline.datasets.tokens import TemplateError, template_error
from storage.corpus import CorpusDocument

RowsOf = Callable[[CorpusDocument, Tally], Iterable[Row]]


def build_rows(
    documents: Iterable[CorpusDocument], rows_of: RowsOf, tick: Callable[[], None] | None = None
) -> tuple[list[Row], Tally]:
    tally = Tally()
    rows: list[Row] = []
    for document in documents:
        if tick:
            tick()
        try:
            rows.extend(rows_of(document, tally))
        except TemplateError as e:
            raise template_error(document.ref, e) from e
    return rows, tally
