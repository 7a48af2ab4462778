"""Casts a Parquet table written by anyone (optbench, pandas, an older or newer pyarrow) to the canonical schema.

Tools disagree on physical types without disagreeing on meaning: pandas writes strings as `large_string`
and nullable integers as float64 with NaN, other writers use int32 or dictionary-encoded strings. The store
reads every file through `conform`, so downstream code sees one schema and a single edited file can never
make concatenation fail. A file that lacks a required column, or whose values cannot be cast without loss,
raises `BadFile` with one sentence saying why; the store reports it and skips it.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc


class BadFile(ValueError):
    """A file that cannot stand for its trial(s): the message says why, in words."""


def _decoded(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(arr.type):
        return arr.cast(arr.type.value_type)
    return arr


def _float_to_int(arr: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """pandas stores a nullable integer column as float64 with NaN: NaN means null, anything else must be whole."""
    arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, arr.type), arr)
    return arr.cast(target, safe=True)


def cast_column(arr: pa.ChunkedArray, target: pa.DataType, name: str) -> pa.ChunkedArray:
    """`arr` as `target`, or BadFile when that would change a value."""
    arr = _decoded(arr)
    if arr.type == target:
        return arr
    try:
        if pa.types.is_floating(arr.type) and pa.types.is_integer(target):
            return _float_to_int(arr, target)
        return arr.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise BadFile(f"column {name!r} holds {arr.type} values that do not fit {target} "
                      f"({str(exc).splitlines()[0]})") from None


def normal_type(t: pa.DataType) -> pa.DataType:
    """The type an extra (undeclared) column is kept as: wide ints and floats, plain strings."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_integer(t):
        return pa.int64()
    if pa.types.is_floating(t):
        return pa.float64()
    return t


def _family(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    if pa.types.is_boolean(t):
        return "bool"
    return str(t)


#: check_types' answers as (file schema, canonical schema, problem): per-trial files share a handful of
#: schemas, so a resume over thousands of them judges each schema once (found by equals(): cheap, and blind
#: to metadata, which varies per plugin while the fields do not)
_CHECKED: list[tuple[pa.Schema, pa.Schema, str | None]] = []
_UNSEEN = object()


def check_types(schema: pa.Schema, canonical: pa.Schema) -> None:
    """BadFile when a canonical column holds values of another kind (text where numbers belong, ...): what a
    file's footer alone can tell, so that resume need not read every row."""
    problem = next((p for seen, canon, p in _CHECKED if canon is canonical and seen.equals(schema)), _UNSEEN)
    if problem is _UNSEEN:
        problem = _type_problem(schema, canonical)
        del _CHECKED[63:]
        _CHECKED.insert(0, (schema, canonical, problem))
    if problem is not None:
        raise BadFile(problem)


def _type_problem(schema: pa.Schema, canonical: pa.Schema) -> str | None:
    wanted = {f.name: f.type for f in canonical}
    for f in schema:
        if f.name not in wanted:
            continue
        have, want = _family(f.type), _family(wanted[f.name])
        if have != want and have != "null":
            return f"column {f.name!r} holds {f.type} values where {wanted[f.name]} belongs"
    return None


def conform(table: pa.Table, schema: pa.Schema, required: Iterable[str]) -> pa.Table:
    """The canonical columns in canonical order and types (absent optional ones as nulls), then any extra
    columns the file carries, normalised. pandas' index columns are dropped."""
    names = set(table.column_names)
    missing = [c for c in required if c not in names]
    if missing:
        raise BadFile(f"lacks required column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    for c in required:
        if table.column(c).null_count:
            raise BadFile(f"required column {c!r} has empty values")
    columns, fields = [], []
    for f in schema:
        if f.name in names:
            columns.append(cast_column(table.column(f.name), f.type, f.name))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
        fields.append(pa.field(f.name, f.type))
    for name in table.column_names:
        if name in schema.names or name.startswith("__index_level_"):
            continue
        arr = _decoded(table.column(name))
        target = normal_type(arr.type)
        columns.append(cast_column(arr, target, name) if target != arr.type else arr)
        fields.append(pa.field(name, target))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def unify(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """Concatenate conformed tables. Extra columns missing from some tables become nulls there; an extra
    column whose type differs between files is widened to float64 (all numeric) or kept as strings."""
    tables = [t for t in tables if t.num_columns]
    if not tables:
        return schema.empty_table()
    extras: dict[str, set[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            if f.name not in schema.names:
                extras.setdefault(f.name, set()).add(f.type)
    fields = list(schema)
    for name, types in extras.items():
        types.discard(pa.null())
        if not types:
            target = pa.float64()  # a declared column that was null everywhere: ColumnSpec's default dtype
        elif len(types) == 1:
            target = next(iter(types))
        elif all(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) for t in types):
            target = pa.float64()
        else:
            target = pa.string()
        fields.append(pa.field(name, target))
    full = pa.schema(fields)
    out = []
    for t in tables:
        if t.schema.equals(full, check_metadata=False):
            out.append(t.replace_schema_metadata(None))
            continue
        index = {name: i for i, name in enumerate(t.schema.names)}
        cols = []
        for f in full:
            if f.name in index:
                col = t.column(index[f.name])
                cols.append(col if col.type == f.type else col.cast(f.type, safe=False))
            else:
                cols.append(pa.nulls(t.num_rows, f.type))
        out.append(pa.Table.from_arrays(cols, schema=full))
    return pa.concat_tables(out)
