"""Querysets compiled once per process and run many times with new values.

Building a small queryset and compiling it costs the ORM several times what the database then takes to run it: the
watchdog's hourly pass asks four to fifteen such questions of every watched agent (is a canary running? which
versions lack a watch? how many errors since the change?), and each cost about a millisecond of Python for a read of
a few index pages. A statement here is written with the ORM as any other, once, with a ``Param`` wherever a value
changes between runs; ``compiled`` compiles it at its first run for a database (and shape) and keeps the SQL, and
each later run only binds the values and converts the rows as the ORM would (``loopsite.rows``).

- A ``Param`` stands for a value, never for ``None``: the ORM writes ``= NULL`` as ``IS NULL``, another statement.
  ``Compiled.rows`` refuses a missing or ``None`` value rather than send one.
- Anything that changes the statement's shape (how many intervals, whether a filter applies) is an argument of the
  builder: each shape is compiled once.
- The database is chosen as a queryset's would be at each run (the router: a replica for reads that may lag).
"""

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections, router
from django.db.models import Expression, Field, Model, QuerySet

from loopsite.rows import Converter, converted


class Param(Expression):
    """A value given at each run of a compiled statement, named ``name`` and prepared as ``field`` prepares it."""

    def __init__(self, name: str, field: Field) -> None:
        super().__init__(output_field=field)
        self.name = name

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        return "%s", [self]

    def __repr__(self) -> str:
        return f"Param({self.name!r})"


@dataclass(frozen=True)
class Compiled:
    """One statement's SQL for one database, with its constant parameters and ``Param``s in order."""

    alias: str
    sql: str
    params: tuple[Any, ...]
    converters: tuple[tuple[int, Any, list[Converter]], ...]  # (column, expression, converters), as ``loopsite.rows``
    attnames: tuple[str, ...]  # the selected fields' attribute names, when it selects a model's own columns

    def rows(self, **values: Any) -> list[tuple[Any, ...]]:
        """The statement's rows for ``values`` (one per ``Param``), converted as the ORM converts them."""
        return [self.convert(row) for row in self.fetched(**values)]

    def fetched(self, **values: Any) -> list[tuple[Any, ...]]:
        """The rows as the database driver gives them (JSON as text, on SQLite times as text): ``convert`` each."""
        connection = connections[self.alias]
        params = [_bound(p, values, connection) if isinstance(p, Param) else p for p in self.params]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            return [tuple(row) for row in cursor.fetchall()]

    def convert(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """A fetched row with the values a queryset gives."""
        if not self.converters:
            return row
        return tuple(converted(connections[self.alias], row, self.converters))

    def one(self, **values: Any) -> tuple[Any, ...]:
        """The single row of an aggregate with no grouping (``totals``)."""
        (row,) = self.rows(**values)
        return row

    def instances(self, model: type[Model], **values: Any) -> list[Any]:
        """The rows as instances of ``model``, as a queryset of its own fields hands them out."""
        if not self.attnames:
            raise ValueError("this statement does not select a model's own columns")
        return [model.from_db(self.alias, list(self.attnames), list(row)) for row in self.rows(**values)]


def _bound(param: Param, values: Mapping[str, Any], connection: Any) -> Any:
    value = values.get(param.name)
    if value is None:
        raise ValueError(f"no value for {param.name!r}: a Param stands for a value, never for None")
    return param.output_field.get_db_prep_value(value, connection, prepared=False)


def totals(qs: QuerySet[Any], **aggregates: Any) -> QuerySet[Any]:
    """``qs``'s aggregates as one row, compilable (``QuerySet.aggregate`` runs at once, so it cannot be kept)."""
    out = qs.order_by().values(**aggregates)
    out.query.group_by = None  # one row over every matching row, as ``aggregate`` asks: no GROUP BY
    return out


def compiled(model: type[Model]) -> Callable[[Callable[..., QuerySet[Any]]], Callable[..., Compiled]]:
    """Decorate ``build(*shape)``, which returns a queryset of ``model`` with ``Param``s: the decorated function
    returns the statement for the database ``model`` is read from now, compiled at its first call for that database
    and ``shape``."""

    def decorate(build: Callable[..., QuerySet[Any]]) -> Callable[..., Compiled]:
        made: dict[tuple[Any, ...], Compiled] = {}

        @functools.wraps(build)
        def statement(*shape: Any) -> Compiled:
            alias = router.db_for_read(model)
            key = (alias, *shape)
            found = made.get(key)
            if found is None:
                found = made[key] = _compile(build(*shape), alias)
            return found

        return statement

    return decorate


def _compile(qs: QuerySet[Any], alias: str) -> Compiled:
    compiler = qs.query.get_compiler(using=alias)
    sql, params = compiler.as_sql()
    selected = [expression for expression, _sql, _alias in compiler.select]
    converters = compiler.get_converters(selected)
    attnames: Sequence[str] = ()
    # A model's own columns, in order: a queryset of instances with nothing joined or annotated (not ``values``).
    if qs.query.default_cols and not qs.query.select_related and not qs.query.annotation_select:
        attnames = tuple(expression.target.attname for expression in selected)
    return Compiled(
        alias=alias,
        sql=sql,
        params=tuple(params),
        converters=tuple((i, expression, list(found)) for i, (found, expression) in sorted(converters.items())),
        attnames=tuple(attnames),
    )
