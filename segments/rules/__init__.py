"""Segment rules: a small JSON grammar, validated once and compiled to one SQL query.

Modules: `grammar` (operators, attribute kinds, limits), `values` (dates, versions,
operands), `validate` (`validate_rules`), `evaluate` (`evaluate_python`) and `sql`
(`compile_rules`). Import from the package; campaign targeting, which builds rule
trees of its own, lives next to audience resolution (segments/targeting.py).

Grammar (docs: the module's README section in DESIGN.md, "Audience API")::

    node      := group | condition
    group     := {"all": [node, ...]} | {"any": [node, ...]} | {"not": node}
    condition := {"attr": name, "op": operator, "value": value}

The same rules run two ways: `compile_rules` turns them into a `Q` over `AppUser`
(hand-written SQL predicates for PostgreSQL and SQLite, so it is one query and never
a loop over users) and `evaluate_python` is the plain reference evaluator the
property test compares it with. Conversion goals reuse the grammar over an event's
flat properties (`validate_property_rules`, `evaluate_properties`): every name is
then a custom attribute, with the semantics below. Both implement exactly these semantics:

* A custom attribute (and the built-ins country, language, timezone, app_version,
  which live in `attributes` too) is *missing* when the key is absent or null.
  A value's type is its JSON type: string, number (compared as double precision),
  boolean, or array of strings. A stored date is a string shaped like one of the two
  canonical forms registration stores, "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM:SS.mmmZ"
  (the shape is the length and the separators; checking every digit costs PostgreSQL
  microseconds a row, and registration only ever stores real dates in these shapes).
* The rule value picks the comparison: a number compares numbers, a boolean
  booleans, a string strings (code-point order, case-sensitive), and a string that
  is an ISO date ("2024-05-01"), an ISO date-time with offset, or a relative date
  ("-7d", "+12h", "-30m", "-2w" from now) compares dates. A date-only value compares
  by UTC day; a date-time value compares instants, a stored date-only value
  counting as midnight UTC. A stored value of another type never satisfies a
  positive operator.
* eq, gt, gte, lt, lte, in, contains (substring of a string, or element of an array
  of strings), starts_with, ends_with, between (inclusive) and exists are positive:
  false on a missing or differently-typed value. neq, not_in, not_contains,
  not_exists and not_between are their exact complements (`not_x == not x`), so they
  are true for a user without the attribute. `{"not": ...}` is the complement too.
* external_id is a string column; platform and provider mean "has an active token
  with ...", so `platform neq ios` is "has no active iOS token" (on PostgreSQL a bit
  test on app_users.active_token_kinds, which triggers on push_tokens keep: see
  segments/migrations/0003_active_token_kinds.py); created_at and
  last_seen_at compare as dates (last_seen_at may be missing); subscribed_age is
  whole days since created_at (floor).
* app_version compares as a version under the ordering operators (gt, gte, lt, lte,
  between, not_between): the rule value must be a dotted numeric version ("2.10");
  a stored string counts by its leading dotted numeric part ("2.1-beta" is 2.1,
  "2.10." is 2.10), whose components compare as integers of any size, left to
  right, with missing components counting as 0 ("2.10" > "2.9" > "2.8.5", and
  "2.9" == "2.9.0" == "2.09"). A stored value with no such part ("v3", "", ".5")
  or of another type (the number 2.9) is not a version: the condition is false,
  as for a missing attribute. Every other operator compares app_version as a
  string. PostgreSQL compares numeric[] arrays built by a regular expression;
  SQLite calls herald_version_cmp, `version_key` registered as a deterministic SQL
  function on each connection (SegmentsConfig.ready) (docs/decisions.md, "app_version order").

Negation is pushed down to the conditions (De Morgan) and every negated condition
is rendered `NOT COALESCE(p, false)`, so SQL's NULLs can never make a complement
disagree with the Python evaluator, while positive conditions stay plain,
index-friendly predicates such as `(attributes ->> 'country') IN ('CA', 'US')`.
"""

from segments.rules.evaluate import evaluate_properties, evaluate_python
from segments.rules.grammar import (
    ALLOWED_OPS,
    ANY_TOKEN_BIT,
    ATTRIBUTE_KEY_RE,
    RESERVED_ATTRS,
    TOKEN_KIND_BITS,
)
from segments.rules.sql import compile_rules, on_connection_created
from segments.rules.validate import (
    StoredRulesInvalid,
    rules_error,
    stored_rules,
    validate_property_rules,
    validate_rules,
)
from segments.rules.values import canonical_date_value, canonical_instant, version_key

__all__ = [
    "ALLOWED_OPS",
    "ANY_TOKEN_BIT",
    "ATTRIBUTE_KEY_RE",
    "RESERVED_ATTRS",
    "TOKEN_KIND_BITS",
    "StoredRulesInvalid",
    "canonical_date_value",
    "canonical_instant",
    "compile_rules",
    "evaluate_properties",
    "evaluate_python",
    "on_connection_created",
    "rules_error",
    "stored_rules",
    "validate_property_rules",
    "validate_rules",
    "version_key",
]
