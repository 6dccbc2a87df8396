"""Schema rules that compare entries of a list or keys of a map, for the models and the CRD alike.

Each CEL rule is kept cheap enough for the API server's cost limits: list and string lengths bound
the number and size of comparisons (measured on a real kube-apiserver: 100 linked dirs and 100 linked
files of 128 characters each stay within the per-call limit).
"""

from __future__ import annotations

from typing import Any

LINKED_MESSAGE = "linkedDirs and linkedFiles must not repeat or nest inside one another"
LABEL_KEY_SIZE_MESSAGE = "label keys are at most 317 characters ([prefix/]name as in Kubernetes labels)"


def _overlap(a: str, b: str) -> str:
    """CEL expression true when two relative paths are the same or one lies inside the other (pure)."""
    return f"{a} == {b} || {a}.startsWith({b} + '/') || {b}.startsWith({a} + '/')"


#: On linkedDirs or linkedFiles (unique by x-kubernetes-list-type set): no entry lies inside another.
LINKED_PATHS: dict[str, Any] = {
    "x-kubernetes-list-type": "set",
    "x-kubernetes-validations": [
        {"rule": "self.all(a, !self.exists(b, a.startsWith(b + '/')))", "message": LINKED_MESSAGE}
    ],
}
#: On the spec (both lists are optional there): no linked dir and linked file overlap.
LINKED_ACROSS: dict[str, Any] = {
    "rule": "!has(self.linkedDirs) || !has(self.linkedFiles) || "
    f"self.linkedDirs.all(a, !self.linkedFiles.exists(b, {_overlap('a', 'b')}))",
    "message": LINKED_MESSAGE,
}
#: On a labels map: the key length. The key format is checked by the models only: a regular
#: expression over map keys of unbounded length would blow the CEL cost budget, their length does not.
LABEL_KEYS: dict[str, Any] = {
    "x-kubernetes-validations": [{"rule": "self.all(k, k.size() <= 317)", "message": LABEL_KEY_SIZE_MESSAGE}]
}


def overlapping_paths(paths: list[str]) -> tuple[str, str] | None:
    """The first pair of paths that are equal or nested (one inside the other), None when all are apart (pure)."""
    for i, a in enumerate(paths):
        for b in paths[i + 1 :]:
            if a == b or a.startswith(b + "/") or b.startswith(a + "/"):
                return a, b
    return None
