"""Label selectors (metav1.LabelSelector → the string form the API takes) and name globs, matched locally.

The API server evaluates selectors for live runs; this module validates a SecretSync's selectors before
any request (so a typo is a clear error naming the field, not an HTTP 400) and evaluates them for dump files.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass

from syncjob.errors import ConfigError

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_KEY_RE = re.compile(rf"^({_PREFIX}/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^({_NAME})?$")
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN_RE = re.compile(rf"^{_PREFIX}$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=" (matchLabels), "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # "notin"


@dataclass(frozen=True)
class LabelSelector:
    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _check_key(key: str, where: str) -> None:
    if not _KEY_RE.match(key):
        raise ConfigError(
            f"{where}: {key!r} is not a valid label key "
            "(alphanumerics, '-', '_', '.', at most 63 characters, optional DNS prefix and '/')"
        )


def _check_value(value: str, where: str) -> None:
    if not _VALUE_RE.match(value):
        raise ConfigError(f"{where}: {value!r} is not a valid label value")


def matches_any_glob(name: str, patterns: tuple[str, ...]) -> bool:
    """`*` and `?` globs, case-sensitive (namespace names are lower case anyway)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def is_dns_label(name: str) -> bool:
    return bool(_DNS_LABEL_RE.match(name))


def is_dns_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS_SUBDOMAIN_RE.match(name))


# LabelSelector operators as the API spells them (metav1.LabelSelectorRequirement) → the string form's.
_SPEC_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}


def _requirement_text(r: Requirement) -> str:
    values = ",".join(sorted(r.values))
    if r.op == "exists":
        return r.key
    if r.op == "!exists":
        return f"!{r.key}"
    if r.op in ("in", "notin"):
        return f"{r.key} {r.op} ({values})"
    return f"{r.key}{r.op}{values}"


def selector_from_spec(spec: object, where: str) -> LabelSelector:
    """A metav1.LabelSelector (matchLabels + matchExpressions) → LabelSelector with its query string.

    Raises ConfigError naming `where` (the field path) and the bad part.
    """
    if spec is None:
        return LabelSelector("", ())
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a label selector (matchLabels and/or matchExpressions)")
    unknown = set(spec) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; use matchLabels, matchExpressions")
    requirements: list[Requirement] = []
    labels = spec.get("matchLabels")
    labels = {} if labels is None else labels
    if not isinstance(labels, Mapping):
        raise ConfigError(f"{where}.matchLabels: expected a map of label keys to values")
    for key, value in sorted(labels.items()):
        _check_key(str(key), f"{where}.matchLabels")
        _check_value(str(value), f"{where}.matchLabels[{key}]")
        requirements.append(Requirement(str(key), "=", frozenset([str(value)])))
    expressions = spec.get("matchExpressions")
    expressions = [] if expressions is None else expressions
    if not isinstance(expressions, list):
        raise ConfigError(f"{where}.matchExpressions: expected a list")
    for i, expr in enumerate(expressions):
        at = f"{where}.matchExpressions[{i}]"
        if not isinstance(expr, Mapping):
            raise ConfigError(f"{at}: expected key, operator and values")
        key, op, values = str(expr.get("key", "")), str(expr.get("operator", "")), expr.get("values")
        values = [] if values is None else values
        _check_key(key, at)
        if op not in _SPEC_OPERATORS:
            raise ConfigError(f"{at}: operator {op!r} is not one of In, NotIn, Exists, DoesNotExist")
        if not isinstance(values, list):
            raise ConfigError(f"{at}.values: expected a list")
        if op in ("In", "NotIn") and not values:
            raise ConfigError(f"{at}: operator {op} needs at least one value")
        if op in ("Exists", "DoesNotExist") and values:
            raise ConfigError(f"{at}: operator {op} takes no values")
        for v in values:
            _check_value(str(v), at)
        requirements.append(Requirement(key, _SPEC_OPERATORS[op], frozenset(str(v) for v in values)))
    text = ",".join(_requirement_text(r) for r in requirements)
    return LabelSelector(text, tuple(requirements))
