"""The pure half of the A2A inbound bridge: card → our skills, task ↔ messages.

No network here: what an A2A card says becomes what our ``AgentCard`` says, an input
object becomes an A2A message, and an A2A task's end becomes an output, a rejection
or a failure. ``inbound`` makes the calls.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from a2a.types import Artifact, Message, Part, Role, Task, TaskState
from google.protobuf import struct_pb2

from meshwright.agent._struct import dict_to_struct, value_to_python
from meshwright.agent.skill import SKILL_ID

_NOT_ID_CHAR = re.compile(r"[^a-z0-9_.\-]+")
_DASHES = re.compile(r"-{2,}")

OUTPUT_ARTIFACT = "output"
"""An artifact with this name holds the task's output (its first DataPart), by the
convention both directions of the bridge share."""

SKILL_METADATA_KEY = "skill"
"""The message metadata key naming the A2A skill to run (the same convention as Out)."""

TERMINAL = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)
INTERRUPTED = frozenset({TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED})
"""States where an A2A task waits for its client; the bridge cannot answer, so they end it."""


def skill_id_for(a2a_id: str) -> str:
    """Our skill id for an A2A skill id, deterministically.

    A valid id (dotted lower case, ``skill.SKILL_ID``) stays as it is. Otherwise: lower
    case, each run of characters outside ``[a-z0-9_.-]`` becomes ``-``, each dotted
    segment loses leading ``_``/``-`` and trailing ``-``, empty segments go, and an id
    left empty is ``skill``. ``"Text Tools/Summarize"`` → ``"text-tools-summarize"``,
    ``"Text.Reverse"`` → ``"text.reverse"``.
    """
    if SKILL_ID.fullmatch(a2a_id):
        return a2a_id
    text = _DASHES.sub("-", _NOT_ID_CHAR.sub("-", a2a_id.lower()))
    segments = [s.lstrip("_-").rstrip("-") for s in text.split(".")]
    mapped = ".".join(s for s in segments if s)
    return mapped if SKILL_ID.fullmatch(mapped) else "skill"


def skill_ids_for(a2a_ids: Sequence[str], *, prefix: str = "") -> dict[str, str]:
    """Our skill id for each A2A skill id (``prefix`` + ``skill_id_for``), all distinct.

    Ids that map to the same one (``"a b"`` and ``"a-b"``) keep it only if it is their
    own; the others get ``-`` and 8 hex digits of their original id's SHA-256, so the
    result does not depend on the order of the card's skills. ValueError for an A2A id
    given twice, or a ``prefix`` that does not make valid ids.
    """
    if len(set(a2a_ids)) != len(a2a_ids):
        dupes = sorted({i for i in a2a_ids if a2a_ids.count(i) > 1})
        raise ValueError(f"the card lists skill ids more than once: {', '.join(dupes)}")
    mapped = {a2a_id: prefix + skill_id_for(a2a_id) for a2a_id in a2a_ids}
    counts: dict[str, int] = {}
    for ours in mapped.values():
        counts[ours] = counts.get(ours, 0) + 1
    for a2a_id, ours in mapped.items():
        if counts[ours] > 1 and ours != prefix + a2a_id:
            mapped[a2a_id] = f"{ours}-{hashlib.sha256(a2a_id.encode()).hexdigest()[:8]}"
    for ours in mapped.values():
        if not SKILL_ID.fullmatch(ours):
            raise ValueError(
                f"--skill-prefix {prefix!r} makes {ours!r}, not a skill id (dotted lower case)"
            )
    return mapped


@dataclass(frozen=True, slots=True)
class PriceRules:
    """Where a bridged skill's price comes from, first match wins."""

    flags: Mapping[str, int]
    """``--price SKILL=N``, by A2A skill id or by our skill id."""
    card: Mapping[str, int]
    """The card's pricing extension, by A2A skill id."""
    default: int | None
    """``--default-price``; None when not given."""

    def price(self, a2a_id: str, ours: str) -> int:
        """``--price`` for either id, else the card's, else ``--default-price``, else 0.

        The card's own price beats ``--default-price``: a default fills the gaps of
        what is known; ``--price`` is the way to overrule the card."""
        for table, key in ((self.flags, a2a_id), (self.flags, ours), (self.card, a2a_id)):
            if key in table:
                return table[key]
        return self.default if self.default is not None else 0


def input_message(
    input: Mapping[str, Any],
    *,
    a2a_skill: str,
    message_id: str,
    context_id: str,
    upstream: Mapping[str, Mapping[str, Any]] | None = None,
    data_part: bool = True,
) -> Message:
    """The A2A message that runs ``a2a_skill`` on ``input``.

    Parts: a DataPart with the whole object, then a TextPart with ``input["text"]``
    (else ``input["prompt"]``) when that is a non-empty string, for text-only agents.
    Without ``data_part`` (a skill whose input modes take no JSON) only the TextPart,
    which is the object as JSON when it has no text. Metadata: ``skill`` (the A2A skill
    id) and, when the task has any, ``upstream`` (the outputs of the tasks it depends on,
    by task id).
    """
    parts: list[Part] = []
    if data_part:
        data = struct_pb2.Value()
        dict_to_struct(input, data.struct_value)
        parts.append(Part(data=data))
    text = input.get("text") or input.get("prompt")
    if isinstance(text, str) and text:
        parts.append(Part(text=text))
    elif not data_part:
        parts.append(Part(text=json.dumps(dict(input), sort_keys=True)))
    metadata = struct_pb2.Struct()
    metadata.update({SKILL_METADATA_KEY: a2a_skill})
    if upstream:
        metadata.update({"upstream": {k: dict(v) for k, v in upstream.items()}})
    return Message(
        role=Role.ROLE_USER,
        message_id=message_id,
        context_id=context_id,
        parts=parts,
        metadata=metadata,
    )


def takes_json(modes: Sequence[str]) -> bool:
    """Whether input media types ``modes`` admit a DataPart (none listed admits anything)."""
    return not modes or any("json" in m or m in ("*/*", "application/*") for m in modes)


def message_id_for(task_id: str) -> str:
    """The A2A message id of our task: the same task id (a re-dispatch of one attempt)
    sends the same message id, which a remote that deduplicates answers once."""
    return f"meshwright-{task_id}"


def parts_data(parts: Sequence[Part]) -> dict[str, Any]:
    """Parts as an object: the first DataPart holding an object, else
    ``{"text": the text parts joined by newlines}`` (plus ``data`` for a DataPart
    that is not an object, and ``files`` for URL/raw parts by their name and type)."""
    texts: list[str] = []
    other: list[Any] = []
    files: list[dict[str, str]] = []
    for part in parts:
        kind = part.WhichOneof("content")
        if kind == "data":
            value = value_to_python(part.data)
            if isinstance(value, dict):
                return value
            other.append(value)
        elif kind == "text":
            texts.append(part.text)
        elif kind in ("url", "raw"):
            files.append(
                {
                    "url": part.url if kind == "url" else "",
                    "filename": part.filename,
                    "media_type": part.media_type,
                }
            )
    out: dict[str, Any] = {"text": "\n".join(texts)}
    if other:
        out["data"] = other[0] if len(other) == 1 else other
    if files:
        out["files"] = files
    return out


def artifact_data(artifact: Artifact) -> dict[str, Any]:
    """An A2A artifact as one of our artifacts' data (see ``parts_data``)."""
    return parts_data(artifact.parts)


def task_output(task: Task) -> dict[str, Any]:
    """The output of a COMPLETED A2A task.

    The first DataPart object of the artifact named ``output`` when there is one (the
    convention both directions share); else ``{"text": every text part of every
    artifact, joined by newlines, "artifacts": [{"name", "data"} per artifact]}`` — and
    with no artifact at all, the text of the final status message.
    """
    for artifact in task.artifacts:
        if artifact.name == OUTPUT_ARTIFACT:
            data = parts_data(artifact.parts)
            if "text" not in data or len(data) > 1 or data["text"]:
                return data
    texts = [p.text for a in task.artifacts for p in a.parts if p.WhichOneof("content") == "text"]
    if not task.artifacts and task.status.HasField("message"):
        texts = [p.text for p in task.status.message.parts if p.WhichOneof("content") == "text"]
    return {
        "text": "\n".join(texts),
        "artifacts": [
            {"name": a.name or a.artifact_id, "data": artifact_data(a)} for a in task.artifacts
        ],
    }


def status_text(task: Task) -> str:
    """The text of a task's status message ("" without one)."""
    if not task.status.HasField("message"):
        return ""
    return "\n".join(p.text for p in task.status.message.parts if p.WhichOneof("content") == "text")


def merge_artifact(task: Task, artifact: Artifact, *, append: bool) -> None:
    """Record an artifact update on ``task``: a new artifact, a replacement of one with
    the same id, or (``append``) more parts for it — A2A's artifact update rules."""
    for existing in task.artifacts:
        if existing.artifact_id == artifact.artifact_id:
            if append:
                existing.parts.extend(artifact.parts)
            else:
                existing.CopyFrom(artifact)
            return
    task.artifacts.append(artifact)


__all__ = [
    "INTERRUPTED",
    "OUTPUT_ARTIFACT",
    "SKILL_METADATA_KEY",
    "TERMINAL",
    "PriceRules",
    "artifact_data",
    "input_message",
    "merge_artifact",
    "message_id_for",
    "parts_data",
    "skill_id_for",
    "skill_ids_for",
    "status_text",
    "takes_json",
    "task_output",
]
