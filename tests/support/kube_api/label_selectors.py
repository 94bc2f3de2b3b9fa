"""Label selectors and field selectors, in the query string syntax that kubectl sends."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.support.kube_api.resources import bad_request

# Fields that the real API server accepts in a fieldSelector, for every resource and for pods.
COMMON_FIELDS = {"metadata.name", "metadata.namespace"}
POD_FIELDS = COMMON_FIELDS | {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                              "spec.serviceAccountName", "status.phase", "status.podIP", "status.nominatedNodeName"}

_SET_TERM = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(in|notin)\s*\(([^)]*)\)|(==|=|!=)\s*([\w./-]*))?\s*$")


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside the parentheses of an ``in (...)`` term."""
    terms, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term for term in terms if term.strip()]


def _label_term(term: str) -> Callable[[dict], bool]:
    match = _SET_TERM.match(term)
    if not match:
        raise bad_request(f"unable to parse requirement: invalid label selector term {term!r}")
    negated, key, set_operator, set_values, operator, value = match.groups()
    if set_operator:
        values = {item.strip() for item in set_values.split(",") if item.strip()}
        if set_operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if operator in ("=", "=="):
        return lambda labels: labels.get(key) == value
    if operator == "!=":
        return lambda labels: labels.get(key) != value
    if negated:
        return lambda labels: key not in labels
    return lambda labels: key in labels


def label_matcher(selector: str | None) -> Callable[[dict], bool]:
    """Return a predicate on an object for a label selector such as ``app=x,tier in (a,b),!canary``."""
    terms = [_label_term(term) for term in _split_terms(selector or "")]

    def matches(obj: dict) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(term(labels) for term in terms)

    return matches


def _field_value(obj: dict, path: str) -> str:
    value = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def field_matcher(selector: str | None, plural: str) -> Callable[[dict], bool]:
    """Return a predicate for a field selector such as ``status.phase=Running,metadata.name!=x``."""
    allowed = POD_FIELDS if plural == "pods" else COMMON_FIELDS
    checks = []
    for term in _split_terms(selector or ""):
        match = re.match(r"^\s*([\w.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not match:
            raise bad_request(f"invalid field selector: {term!r}")
        path, operator, value = match.groups()
        if path not in allowed:
            raise bad_request(f'field label not supported: {path}')
        checks.append((path, operator == "!=", value))

    def matches(obj: dict) -> bool:
        return all((_field_value(obj, path) == value) != negated for path, negated, value in checks)

    return matches
