"""Label selectors (the Kubernetes string form) and name globs, parsed and matched locally.

The API server evaluates selectors for live runs; this module validates flags before any request
(so a typo is a clear configuration error, not an HTTP 400) and evaluates them for snapshot files.
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

_SET_RE = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
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
        return not present or value not in self.values  # "!=" and "notin"


@dataclass(frozen=True)
class LabelSelector:
    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _check_key(key: str, flag: str, text: str) -> None:
    if not _KEY_RE.match(key):
        raise ConfigError(
            f"{flag} {text!r}: {key!r} is not a valid label key "
            "(alphanumerics, '-', '_', '.', at most 63 characters, optional DNS prefix and '/')"
        )


def _check_value(value: str, flag: str, text: str) -> None:
    if not _VALUE_RE.match(value):
        raise ConfigError(f"{flag} {text!r}: {value!r} is not a valid label value")


def parse_label_selector(text: str, flag: str = "selector") -> LabelSelector:
    """Parse `a=b,c!=d,e in (f,g),!h`. Raises ConfigError naming the flag and the bad part."""
    requirements: list[Requirement] = []
    if text.strip() == "":
        return LabelSelector(text, ())
    for part in _split_top_level(text):
        eq = _EQ_RE.match(part)
        if eq:
            key, op, value = eq.group(1), eq.group(2), eq.group(3)
            _check_key(key, flag, text)
            _check_value(value, flag, text)
            requirements.append(Requirement(key, "!=" if op == "!=" else "=", frozenset([value])))
            continue
        st = _SET_RE.match(part)
        if st and not (st.group(1) and st.group(3)):
            negated, key, op, values = st.group(1), st.group(2), st.group(3), st.group(4)
            _check_key(key, flag, text)
            if op:
                items = frozenset(v.strip() for v in values.split(","))
                for v in items:
                    _check_value(v, flag, text)
                requirements.append(Requirement(key, op, items))
            else:
                requirements.append(Requirement(key, "!exists" if negated else "exists"))
            continue
        raise ConfigError(
            f"{flag} {text!r}: cannot parse {part.strip()!r}; use the kubectl form, "
            "e.g. 'team=builds,tier in (a,b),!skip'"
        )
    return LabelSelector(text, tuple(requirements))


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
    labels = spec.get("matchLabels") or {}
    if not isinstance(labels, Mapping):
        raise ConfigError(f"{where}.matchLabels: expected a map of label keys to values")
    for key, value in sorted(labels.items()):
        _check_key(str(key), f"{where}.matchLabels", str(key))
        _check_value(str(value), f"{where}.matchLabels", str(key))
        requirements.append(Requirement(str(key), "=", frozenset([str(value)])))
    expressions = spec.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise ConfigError(f"{where}.matchExpressions: expected a list")
    for i, expr in enumerate(expressions):
        at = f"{where}.matchExpressions[{i}]"
        if not isinstance(expr, Mapping):
            raise ConfigError(f"{at}: expected key, operator and values")
        key, op, values = str(expr.get("key", "")), str(expr.get("operator", "")), expr.get("values") or []
        _check_key(key, at, key)
        if op not in _SPEC_OPERATORS:
            raise ConfigError(f"{at}: operator {op!r} is not one of In, NotIn, Exists, DoesNotExist")
        if not isinstance(values, list):
            raise ConfigError(f"{at}.values: expected a list")
        if op in ("In", "NotIn") and not values:
            raise ConfigError(f"{at}: operator {op} needs at least one value")
        if op in ("Exists", "DoesNotExist") and values:
            raise ConfigError(f"{at}: operator {op} takes no values")
        for v in values:
            _check_value(str(v), at, key)
        requirements.append(Requirement(key, _SPEC_OPERATORS[op], frozenset(str(v) for v in values)))
    text = ",".join(_requirement_text(r) for r in requirements)
    return LabelSelector(text, tuple(requirements))
