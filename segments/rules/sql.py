"""compile_rules: rules as one `Q` over AppUser, with hand-written SQL predicates.

PostgreSQL and SQLite each get their own SQL; the semantics are the package's
(segments/rules/__init__.py) and evaluate_python's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    BooleanField,
    Exists,
    Expression,
    F,
    OuterRef,
    Q,
)
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IsNull,
    LessThan,
    LessThanOrEqual,
)
from django.db.models.sql.compiler import SQLCompiler

from delivery.models import PushToken
from segments.rules.grammar import (
    ANY_TOKEN_BIT,
    BTREE_KEYS,
    COMPLEMENTS,
    ORDERING_OPS,
    TOKEN_KIND_BITS,
    VERSION_ATTR,
    attribute_kind,
)
from segments.rules.values import (
    DAY,
    MIDNIGHT_SUFFIX,
    Operand,
    VersionKey,
    date_operand,
    scalar_operand,
    version_key,
    version_operand,
)

_PG_DATE_LIKE = ("____-__-__", "____-__-__T__:__:__.___Z")
_SQLITE_DATE_GLOB = ("????-??-??", "????-??-??T??:??:??.???Z")
# The same leading part, and the trailing zero components dropped, on PostgreSQL
# ("[.]" rather than "\." so no escaping depends on standard_conforming_strings).
_PG_VERSION_PREFIX = "^[0-9]+(?:[.][0-9]+)*"
_PG_TRAILING_ZEROS = "([.]0+)+$"
SQLITE_VERSION_CMP = "herald_version_cmp"


def _sqlite_version_cmp(stored: Any, wanted: Any) -> int | None:
    """herald_version_cmp(stored, wanted) on SQLite: the sign of stored - wanted.

    NULL when either is not a string starting with a version, so a positive
    condition is false and its NULL-safe complement true, as in evaluate_python.
    """
    if not isinstance(stored, str) or not isinstance(wanted, str):
        return None
    key, target = version_key(stored), version_key(wanted)
    if key is None or target is None:
        return None
    return (key > target) - (key < target)


def register_sqlite_functions(connection: BaseDatabaseWrapper) -> None:
    """Give a SQLite connection the functions the compiled rules call.

    SQLite has no arrays or regular expressions to build a version order from, and a
    padded sort key would cap component sizes; one deterministic function keeps the
    comparison in the query (SQLite calls it per row, like a built-in) and exact.
    Connected to `connection_created` by SegmentsConfig.ready(), so every connection
    has it before its first query.
    """
    if connection.vendor == "sqlite":
        connection.connection.create_function(
            SQLITE_VERSION_CMP, 2, _sqlite_version_cmp, deterministic=True
        )


def on_connection_created(sender: Any, connection: BaseDatabaseWrapper, **_: Any) -> None:
    register_sqlite_functions(connection)


# ----------------------------------------------------------------- SQL predicates

_Sql = tuple[str, list[Any]]


class _Predicate(Expression):
    """A boolean SQL predicate written per vendor over compiled source columns."""

    output_field = BooleanField()

    def __init__(self, *sources: Any) -> None:
        super().__init__()
        self.sources = list(sources)

    def get_source_expressions(self) -> list[Any]:
        return self.sources

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        self.sources = list(exprs)

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> _Sql:
        compiled = [compiler.compile(source) for source in self.sources]
        params: list[Any] = []
        for _, source_params in compiled:
            params.extend(source_params)
        if params:  # columns never carry parameters; keep the SQL simple to splice
            raise ValueError("source expressions must be plain columns")
        columns = [sql for sql, _ in compiled]
        return self.render(connection.vendor, columns)

    def render(self, vendor: str, columns: list[str]) -> _Sql:
        raise NotImplementedError


class Negated(_Predicate):
    """`NOT COALESCE(p, false)`: the exact complement of p, NULL counting as false."""

    def render(self, vendor: str, columns: list[str]) -> _Sql:
        raise NotImplementedError  # as_sql compiles the wrapped predicate itself

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> _Sql:
        sql, params = compiler.compile(self.sources[0])
        false = "false" if connection.vendor == "postgresql" else "0"
        return f"NOT COALESCE(({sql}), {false})", list(params)


class Constant(_Predicate):
    def __init__(self, value: bool) -> None:
        super().__init__()
        self.value = value

    def render(self, vendor: str, columns: list[str]) -> _Sql:
        return ("(1 = 1)" if self.value else "(1 = 0)"), []


@dataclass(frozen=True)
class _Test:
    """One positive test on a text/JSON value: what `render` turns into SQL."""

    kind: str  # exists | in | cmp | contains | starts_with | ends_with
    op: str = ""
    operand: Operand | None = None
    values: tuple[Operand, ...] = ()


_SQL_OPS = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class _ValueSql:
    """SQL fragments for one value: its text, its JSON type and typed views of it."""

    def __init__(self, vendor: str, column: str, key: str | None) -> None:
        self.pg = vendor == "postgresql"
        self.json = key is not None
        self.column, self.key = column, key
        if key is None:  # a text column such as external_id
            self.text = column
        elif self.pg:
            self.text = f"({column} ->> '{key}')"
            self.node = f"({column} -> '{key}')"
            self.typeof = f"jsonb_typeof({self.node})"
        else:
            path = "$." + json.dumps(key)
            self.text = f"json_extract({column}, '{path}')"
            self.typeof = f"json_type({column}, '{path}')"
            self.path = path

    def is_type(self, kind: str) -> str:
        if not self.json:
            return "(1 = 1)" if kind == "string" else "(1 = 0)"
        if self.pg:
            return f"{self.typeof} = '{kind}'"
        names = {
            "string": "('text')",
            "number": "('integer', 'real')",
            "boolean": "('true', 'false')",
            "array": "('array')",
        }[kind]
        return f"{self.typeof} IN {names}"

    @property
    def ordered_text(self) -> str:
        """Text compared in code-point order, whatever the database's collation."""
        return f'{self.text} COLLATE "C"' if self.pg else self.text

    @property
    def number(self) -> str:
        # CASE, not AND: PostgreSQL may evaluate AND operands in any order, and the
        # cast would fail on a string.
        if self.pg:
            return f"(CASE WHEN {self.is_type('number')} THEN {self.text}::double precision END)"
        return f"(CASE WHEN {self.is_type('number')} THEN {self.text} END)"

    @property
    def boolean_text(self) -> str:
        if self.pg:
            return self.text  # 'true' / 'false'
        return f"(CASE {self.typeof} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' END)"

    def is_stored_date(self) -> _Sql:
        """A string with a date's shape (an array's text could have it: hence the type)."""
        match = "LIKE" if self.pg else "GLOB"
        shapes = _PG_DATE_LIKE if self.pg else _SQLITE_DATE_GLOB
        sql = f"({self.is_type('string')} AND ({self.text} {match} %s OR {self.text} {match} %s))"
        return sql, list(shapes)

    def _string_guard(self, values: Iterable[str]) -> str | None:
        """The string type check, when the value's text alone could be ambiguous.

        `->>` renders the number 5 as '5', so '5' needs the check; 'US' cannot be
        the text of anything but a string, and leaving the check out lets an index
        on `(attributes ->> 'country')` answer the query alone.
        """
        if not self.json:
            return None
        if not self.pg:
            return self.is_type("string")
        for value in values:
            try:
                decoded = json.loads(value)
            except ValueError:
                continue
            if not isinstance(decoded, str):
                return self.is_type("string")
        return None

    def membership(self, operands: Sequence[Operand]) -> _Sql:
        if self.pg and self.json and self.key not in BTREE_KEYS:
            return self._containment(operands)
        parts: list[str] = []
        params: list[Any] = []
        strings = [o.value for o in operands if o.kind == "string"]
        numbers = [o.value for o in operands if o.kind == "number"]
        booleans = [o.value for o in operands if o.kind == "boolean"]
        if strings:
            marks = ", ".join(["%s"] * len(strings))
            guard = self._string_guard(strings)
            test = f"{self.text} IN ({marks})"
            parts.append(f"({guard} AND {test})" if guard else test)
            params.extend(strings)
        if numbers:
            parts.append(f"{self.number} IN ({', '.join(['%s'] * len(numbers))})")
            params.extend(numbers)
        if booleans:
            marks = ", ".join(["%s"] * len(booleans))
            parts.append(f"({self.is_type('boolean')} AND {self.boolean_text} IN ({marks}))")
            params.extend("true" if b else "false" for b in booleans)
        return "(" + " OR ".join(parts) + ")", params

    def _containment(self, operands: Sequence[Operand]) -> _Sql:
        """JSON equality as `attributes @> '{"key": value}'`: exactly typed (1 = 1.0,
        "5" != 5, an array never equals a scalar) and answered by the GIN index."""
        parts = [f"{self.column} @> %s::jsonb" for _ in operands]
        params = [json.dumps({self.key: o.value}) for o in operands]
        return "(" + " OR ".join(parts) + ")", params

    def compare(self, op: str, operand: Operand) -> _Sql:
        sql_op = _SQL_OPS[op]
        if operand.kind == "number":
            return f"{self.number} {sql_op} %s", [operand.value]
        if operand.kind == "boolean":
            return self.membership([operand]) if op == "eq" else ("(1 = 0)", [])
        if operand.kind == "version":
            return self.version_compare(sql_op, operand.value)
        if operand.kind == "string":
            if op == "eq":
                return self.membership([operand])
            return f"({self.is_type('string')} AND {self.ordered_text} {sql_op} %s)", [
                operand.value
            ]
        is_date, date_params = self.is_stored_date()
        if operand.kind == "day":
            key = f"substr({self.text}, 1, 10)"
        elif self.pg:  # the shape check guarantees 10 or 24 characters
            key = f"rpad({self.text}, 24, '{MIDNIGHT_SUFFIX}')"
        else:
            key = (
                f"(CASE WHEN length({self.text}) = 10 THEN {self.text} || '{MIDNIGHT_SUFFIX}' "
                f"ELSE {self.text} END)"
            )
        if self.pg:
            key = f'{key} COLLATE "C"'
        return f"({is_date} AND {key} {sql_op} %s)", [*date_params, operand.value]

    def version_compare(self, sql_op: str, key: VersionKey) -> _Sql:
        """The stored string's leading version `sql_op` the rule's, NULL if it has none.

        PostgreSQL: numeric[] from the leading part minus trailing zero components
        (substring gives NULL without one, and nothing here can fail on any text);
        arrays compare element by element, a prefix first, as `version_key` tuples.
        """
        wanted = ".".join(digits for _, digits in key)
        is_string = self.is_type("string")
        if not self.pg:
            return f"({is_string} AND {SQLITE_VERSION_CMP}({self.text}, %s) {sql_op} 0)", [wanted]
        prefix = f"substring({self.text} from '{_PG_VERSION_PREFIX}')"
        stored = f"string_to_array(regexp_replace({prefix}, '{_PG_TRAILING_ZEROS}', ''), '.')"
        return (
            f"({is_string} AND {stored}::numeric[] {sql_op} string_to_array(%s, '.')::numeric[])",
            [wanted],
        )

    def contains(self, needle: str) -> _Sql:
        finder = "strpos" if self.pg else "instr"
        in_string = f"({self.is_type('string')} AND {finder}({self.text}, %s) > 0)"
        if not self.json:
            return in_string, [needle]
        if self.pg:
            # {"k": ["x"]} is contained only when k is an array holding "x": no
            # extraction per row, and the GIN index can answer it.
            in_array = f"{self.column} @> %s::jsonb"
            return f"({in_array} OR {in_string})", [json.dumps({self.key: [needle]}), needle]
        # The column and the path are ours (keys match ATTRIBUTE_KEY_RE); values are params.
        in_array = (
            f"({self.is_type('array')} AND EXISTS (SELECT 1 FROM json_each({self.column}, "  # noqa: S608
            f"'{self.path}') AS elem WHERE elem.type = 'text' AND elem.value = %s))"
        )
        return f"({in_string} OR {in_array})", [needle, needle]

    def affix(self, kind: str, affix: str) -> _Sql:
        n = len(affix)
        if kind == "starts_with":
            part = f"substr({self.text}, 1, {n})"
        else:
            part = f"right({self.text}, {n})" if self.pg else f"substr({self.text}, -{n})"
        return f"({self.is_type('string')} AND {part} = %s)", [affix]


class ValuePredicate(_Predicate):
    """A test on one JSON key of `attributes`, or on a text column (key None)."""

    def __init__(self, column: Any, key: str | None, test: _Test) -> None:
        super().__init__(column)
        self.key = key
        self.test = test

    def render(self, vendor: str, columns: list[str]) -> _Sql:
        value = _ValueSql(vendor, columns[0], self.key)
        test = self.test
        if test.kind == "exists":
            return f"{value.text} IS NOT NULL", []
        if test.kind == "in":
            return value.membership(test.values)
        if test.kind == "cmp":
            assert test.operand is not None
            return value.compare(test.op, test.operand)
        assert test.operand is not None
        if test.kind == "contains":
            return value.contains(test.operand.value)
        return value.affix(test.kind, test.operand.value)


class TokenKindPredicate(_Predicate):
    """Has an active token with platform/provider in `values` (any token if empty)?

    PostgreSQL: a bit test on app_users.active_token_kinds, the set triggers keep
    (segments/migrations/0003), so no join with push_tokens. Elsewhere: EXISTS.
    """

    def __init__(self, attr: str, values: tuple[str, ...]) -> None:
        tokens = PushToken.objects.filter(app_user=OuterRef("pk"), active=True)
        if values:
            tokens = tokens.filter(**{f"{attr}__in": list(values)})
        super().__init__(F("pk"), Exists(tokens))
        self.attr, self.values = attr, values

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> _Sql:
        if connection.vendor != "postgresql":
            sql, params = compiler.compile(self.sources[1])
            return sql, list(params)
        pk_sql, _ = compiler.compile(self.sources[0])
        return self.render(connection.vendor, [pk_sql])

    def render(self, vendor: str, columns: list[str]) -> _Sql:
        table, _, column = columns[0].rpartition(".")
        assert table and column == '"id"', columns[0]  # the pk of app_users, qualified
        bits = TOKEN_KIND_BITS[self.attr]
        mask = ANY_TOKEN_BIT if not self.values else sum({bits[v] for v in self.values})
        return f"({table}.active_token_kinds & {mask}) <> 0", []


# ------------------------------------------------------------------------ compile


def _value_test(
    base: str, raw: Any, now: datetime, *, dates: bool, versions: bool = False
) -> list[_Test]:
    """The positive tests (ANDed) for a condition on a JSON key or a text column."""
    if versions and base == "between":
        low, high = (version_operand(b) for b in raw)
        return [_Test("cmp", "gte", low), _Test("cmp", "lte", high)]
    if versions and base in ORDERING_OPS:
        return [_Test("cmp", base, version_operand(raw))]
    if base == "exists":
        return [_Test("exists")]
    if base == "in":
        return [_Test("in", values=tuple(scalar_operand(v, now, dates=False) for v in raw))]
    if base in ("contains", "starts_with", "ends_with"):
        return [_Test(base, operand=Operand("string", raw))]
    if base == "between":
        low, high = (scalar_operand(b, now, dates=dates) for b in raw)
        return [_Test("cmp", "gte", low), _Test("cmp", "lte", high)]
    return [_Test("cmp", base, scalar_operand(raw, now, dates=dates))]


_LOOKUPS = {
    "eq": Exact,
    "gt": GreaterThan,
    "gte": GreaterThanOrEqual,
    "lt": LessThan,
    "lte": LessThanOrEqual,
}


def _moment_lookups(column: str, base: str, raw: Any, now: datetime) -> list[Any]:
    field = F(column)
    if base == "exists":
        return [IsNull(field, False)]
    if base == "between":
        return [
            *_moment_lookups(column, "gte", raw[0], now),
            *_moment_lookups(column, "lte", raw[1], now),
        ]
    operand = date_operand(raw, now)
    assert operand is not None
    if operand.kind == "instant":
        return [_LOOKUPS[base](field, operand.moment)]
    low = datetime.fromisoformat(operand.value).replace(tzinfo=UTC)
    high = low + DAY
    bounds: dict[str, list[Any]] = {
        "eq": [GreaterThanOrEqual(field, low), LessThan(field, high)],
        "gt": [GreaterThanOrEqual(field, high)],
        "gte": [GreaterThanOrEqual(field, low)],
        "lt": [LessThan(field, low)],
        "lte": [LessThan(field, high)],
    }
    return bounds[base]


def _age_lookups(base: str, raw: Any, now: datetime) -> list[Any]:
    """Whole days since created_at, as bounds on created_at (index-friendly).

    floor(age) >= n  <=>  created_at <= now - n days; floor(age) <= n <=> created_at >
    now - (n + 1) days.
    """
    field = F("created_at")
    if base == "between":
        return [*_age_lookups("gte", raw[0], now), *_age_lookups("lte", raw[1], now)]
    n = int(raw)
    at_least = {"gte": n, "gt": n + 1, "eq": n}.get(base)
    at_most = {"lte": n, "lt": n - 1, "eq": n}.get(base)
    lookups: list[Any] = []
    if at_least is not None:
        lookups.append(LessThanOrEqual(field, now - at_least * DAY))
    if at_most is not None:
        lookups.append(GreaterThan(field, now - (at_most + 1) * DAY))
    return lookups


def _condition_expressions(node: Mapping[str, Any], now: datetime) -> list[Any]:
    attr, op = node["attr"], node["op"]
    base = COMPLEMENTS.get(op, op)
    raw: Any = node.get("value")
    kind = attribute_kind(attr)
    if kind == "token":
        values: tuple[str, ...] = ()
        if base != "exists":
            values = tuple(raw) if base == "in" else (raw,)
        return [TokenKindPredicate(attr, values)]
    if kind == "date_column":
        return _moment_lookups(attr, base, raw, now)
    if kind == "age":
        return _age_lookups(base, raw, now)
    if kind == "external_id":
        return [
            ValuePredicate(F("external_id"), None, test)
            for test in _value_test(base, raw, now, dates=False)
        ]
    return [
        ValuePredicate(F("attributes"), attr, test)
        for test in _value_test(base, raw, now, dates=True, versions=attr == VERSION_ATTR)
    ]


def _compile(node: Mapping[str, Any], now: datetime, negate: bool) -> Q:
    if not node:
        return Q(Constant(not negate))
    if "not" in node:
        return _compile(node["not"], now, not negate)
    for key, joiner in (("all", "AND"), ("any", "OR")):
        if key in node:
            if negate:
                joiner = "OR" if joiner == "AND" else "AND"
            parts = [_compile(child, now, negate) for child in node[key]]
            combined = Q(*parts, _connector=joiner) if parts else Q(Constant(joiner == "AND"))
            return combined
    expressions = _condition_expressions(node, now)
    if node["op"] in COMPLEMENTS:
        negate = not negate
    if not negate:
        return Q(*expressions)
    if len(expressions) == 1:
        return Q(Negated(expressions[0]))
    return Q(*(Negated(e) for e in expressions), _connector="OR")


def compile_rules(rules: Mapping[str, Any], *, now: datetime, negate: bool = False) -> Q:
    """A `Q` over AppUser selecting the users `rules` match at `now` (one SQL query).

    `rules` must have passed `validate_rules`; `{}` matches everyone. `now` anchors
    relative dates and subscribed_age, so a count and a send agree on the instant.
    `negate=True` selects the exact complement (NULL-safe), as a rule's `not` compiles.
    """
    return _compile(rules, now, negate)
