"""Applying a file to the running config as ``kubectl apply`` does, and what it changes.

``merge_documents`` puts a file's documents over the running config's: an object the file
defines (by kind and name, whichever apiVersion spells it: a Kueue ``LocalQueue`` is our
``Queue``) replaces the running one, and every other running object stays. With ``prune``
the file is the whole config, and running objects it leaves out are removed. Either way
the result is validated as a whole; the file's documents come first, so messages number
them as the file does.

``diff`` says what a new config adds, changes and removes, object by object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from ray_queue.engine.config import QueueConfig
from ray_queue.engine.config_documents import KIND_BY_NAME, Kind
from ray_queue.engine.config_loader import flatten_documents, parse_documents, to_documents


class Change(str, Enum):
    ADDED = "added"
    CHANGED = "changed"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class ObjectChange:
    change: Change
    kind: str
    name: str

    def __str__(self) -> str:
        mark = {Change.ADDED: "+", Change.CHANGED: "~", Change.REMOVED: "-"}[self.change]
        return f"{mark} {self.kind}/{self.name}"


def document_key(doc: object) -> tuple[Kind, str] | None:
    """What object a document defines; ``None`` for one too malformed to say (it is kept,
    and validation reports it)."""
    if not isinstance(doc, Mapping):
        return None
    kind = KIND_BY_NAME.get(str(doc.get("kind")))
    if kind is None:
        return None
    if kind is Kind.CONFIGURATION:
        return kind, ""  # one per config, whatever it is called
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return (kind, str(name)) if name else None


def merge_documents(
    running: QueueConfig, docs: Sequence[object], *, prune: bool = False
) -> QueueConfig:
    """The config after applying ``docs`` over ``running`` (raises ``ConfigError``)."""
    incoming = flatten_documents(docs)
    if prune:
        return parse_documents(incoming)
    defined = {key for key in map(document_key, incoming) if key is not None}
    kept = [doc for doc in to_documents(running) if document_key(doc) not in defined]
    return parse_documents([*incoming, *kept])


_COLLECTIONS: tuple[tuple[str, str], ...] = (
    ("flavors", "ResourceFlavor"),
    ("cohorts", "Cohort"),
    ("cluster_queues", "ClusterQueue"),
    ("queues", "Queue"),
    ("priority_classes", "PriorityClass"),
    ("admission_checks", "AdmissionCheck"),
)


def diff(old: QueueConfig, new: QueueConfig) -> list[ObjectChange]:
    """Every object ``new`` adds, changes or removes relative to ``old``."""
    out: list[ObjectChange] = []
    for attribute, kind in _COLLECTIONS:
        before: Mapping[str, object] = getattr(old, attribute)
        after: Mapping[str, object] = getattr(new, attribute)
        for name in sorted(before.keys() | after.keys()):
            if name not in before:
                out.append(ObjectChange(Change.ADDED, kind, name))
            elif name not in after:
                out.append(ObjectChange(Change.REMOVED, kind, name))
            elif before[name] != after[name]:
                out.append(ObjectChange(Change.CHANGED, kind, name))
    if old.settings != new.settings:
        out.append(ObjectChange(Change.CHANGED, "Configuration", "default"))
    return out
