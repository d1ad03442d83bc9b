"""Reading relationship and attribute data files.

A data file (YAML or JSON) has two optional keys::

    relationships:
      - document:42#owner@user:alice          # the string form
      - [document:42, parent, folder:7]       # or (resource, relation, subject)
    attributes:
      document:42: {tenant: acme, classification: confidential}

Problems are reported like policy problems: all at once, with positions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from agentauthz.errors import InvalidInputError, PolicyError, Problem
from agentauthz.model import Relationship, parse_entity_key
from agentauthz.policy.loader import read_source

__all__ = ["DataSet", "load_data"]


class DataSet:
    """Relationships and attributes read from a data file, validated for shape."""

    def __init__(self, relationships: list[Relationship],
                 attributes: dict[str, dict[str, Any]]) -> None:
        self.relationships = relationships
        self.attributes = attributes


def load_data(source: str | os.PathLike[str] | Mapping[str, Any]) -> DataSet:
    src = read_source(source)
    pos = src.positions
    data = src.data if src.data is not None else {}
    if not isinstance(data, dict):
        raise PolicyError([pos.problem((), "a data file must be a mapping with 'relationships' "
                                           "and/or 'attributes'")])
    problems: list[Problem] = []
    for key in data:
        if key not in ("relationships", "attributes"):
            problems.append(pos.problem((str(key),), f"unknown field {key!r}",
                                        hint="a data file has 'relationships' and 'attributes'"))
    rels: list[Relationship] = []
    raw_rels = data.get("relationships") or []
    if not isinstance(raw_rels, list):
        problems.append(pos.problem(("relationships",), "must be a list"))
        raw_rels = []
    for i, item in enumerate(raw_rels):
        try:
            rels.append(Relationship.of(tuple(item) if isinstance(item, list) else item))
        except (InvalidInputError, TypeError) as exc:
            problems.append(pos.problem(("relationships", i), str(exc)))
    attrs: dict[str, dict[str, Any]] = {}
    raw_attrs = data.get("attributes") or {}
    if not isinstance(raw_attrs, dict):
        problems.append(pos.problem(("attributes",), "must be a mapping of entity to attributes"))
        raw_attrs = {}
    for entity, values in raw_attrs.items():
        try:
            parse_entity_key(entity)
        except InvalidInputError as exc:
            problems.append(pos.problem(("attributes", str(entity)), str(exc)))
            continue
        if not isinstance(values, dict) or "id" in values or "type" in values:
            problems.append(pos.problem(("attributes", str(entity)),
                                        "attributes must be a mapping without 'id' or 'type'"))
            continue
        attrs[entity] = values
    if problems:
        raise PolicyError(problems)
    return DataSet(rels, attrs)
