"""Validate prometheus-operator objects with cloudcoil's pydantic models of its CRDs.

Run by the tests with the Python of ``.tools/operator-models`` (scripts/deploy-tools.sh installs it
there, apart from the test venv): reads a JSON list of objects on stdin, prints a JSON list with the
problems of each object. A problem is a model validation error, or a field the model does not know
(the model is lenient about unknown fields, so the object must come back unchanged from a
validate/dump round trip).
"""

from __future__ import annotations

import json
import sys

from cloudcoil.models.prometheus_operator import v1  # type: ignore[import-not-found]


def problems(doc: dict) -> list[str]:  # type: ignore[type-arg]
    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    model_class = getattr(v1, str(doc.get("kind")), None)
    if model_class is None:
        return [f"{where}: no prometheus-operator model for this kind"]
    try:
        model = model_class.model_validate(doc)
    except ValueError as exc:
        return [f"{where}: {exc}"]
    if model.model_dump(by_alias=True, exclude_unset=True, mode="json") != doc:
        return [f"{where}: has fields that prometheus-operator does not know"]
    return []


if __name__ == "__main__":
    print(json.dumps([problems(doc) for doc in json.load(sys.stdin)]))
