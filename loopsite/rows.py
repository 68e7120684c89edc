"""Rows read with a plain cursor, converted as the ORM converts them.

A few reads (the signed-in user, the review queue's page, the tuner's cluster samples) run SQL on a cursor, not
through a queryset, whose building, compiling and per-row machinery cost more than the round trip. Their values
must still be what a queryset would hand out: SQLite's text datetimes made aware, its 0 and 1 made booleans, JSON
decoded by its field.
``converters`` lists, for each selected field, the backend's and the field's own converters, as the query compiler
applies them (``SQLCompiler.get_converters``).
"""

from collections.abc import Callable, Sequence
from typing import Any

from django.db.models import Field

Converter = Callable[[Any, Any, Any], Any]


def converters(connection: Any, fields: Sequence[Field]) -> list[tuple[int, Any, list[Converter]]]:
    """(column index, expression, converters) for each of ``fields`` that has any, in select order."""
    out = []
    for i, field in enumerate(fields):
        column = field.get_col(field.model._meta.db_table)
        found = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        if found:
            out.append((i, column, found))
    return out


def converted(connection: Any, row: Sequence[Any], plan: Sequence[tuple[int, Any, list[Converter]]]) -> list[Any]:
    """``row``'s values through ``plan`` (``converters``)."""
    values = list(row)
    for i, column, found in plan:
        for convert in found:
            values[i] = convert(values[i], column, connection)
    return values
