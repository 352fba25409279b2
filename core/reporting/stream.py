"""Reading large tables in constant memory.

`keyset` walks a query in pages ordered by (time, id), each page fetched with
peewee's ``.iterator()`` (no row cache) and the next page starting after the
last key seen — so memory stays flat however many rows there are, on every
backend (a plain PostgreSQL cursor would fetch the whole result at once).
"""

from __future__ import annotations

from typing import Any, Iterator

import peewee

PAGE_SIZE = 1000


def keyset(query: peewee.ModelSelect, time_field: peewee.Field, id_field: peewee.Field,
           page_size: int = PAGE_SIZE, key_of: Any = None) -> Iterator[Any]:
    """Every row of *query* in (time, id) order, *page_size* rows per round trip.

    :param key_of: returns ``(time, id)`` of a row (default: attributes named
        like the two fields).
    """
    if key_of is None:
        time_name, id_name = time_field.name, id_field.name

        def key_of(row: Any) -> tuple[Any, Any]:
            if isinstance(row, dict):
                return row[time_name], row[id_name]
            return getattr(row, time_name), getattr(row, id_name)

    ordered = query.order_by(time_field, id_field)
    last: tuple[Any, Any] | None = None
    while True:
        page = ordered
        if last is not None:
            page = page.where((time_field > last[0]) | ((time_field == last[0]) & (id_field > last[1])))
        count = 0
        for row in page.limit(page_size).iterator():
            count += 1
            last = key_of(row)
            yield row
        if count < page_size:
            return
