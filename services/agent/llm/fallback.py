"""Deterministic answers for when the model cannot give one.

Each is a pure function of its input (no clock, no randomness), so a degraded
agent answers the same question the same way and tests can pin the output:

- ``extractive_summary``: sentences scored by the frequency of their content
  words in the whole text; the best ones, in their original order.
- ``keyword_classify``: each label scored by how often its words (and any
  keywords given for it) occur in the text.
- ``degraded_chat``: a plain statement that the model is unavailable.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n|\n(?=\s*[-*\u2022]\s)")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves""".split()
)
"""Words that say nothing about a text's topic (English)."""


def words(text: str) -> list[str]:
    """The lower-case words of ``text``."""
    return [w.lower() for w in _WORD.findall(text)]


def content_words(text: str) -> list[str]:
    """``words`` without stopwords and one-letter words."""
    return [w for w in words(text) if w not in STOPWORDS and len(w) > 1]


def sentences(text: str) -> list[str]:
    """``text`` split into sentences (at ., ! or ? before whitespace, blank lines, list
    items), stripped, empty ones dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def extractive_summary(text: str, max_sentences: int = 3) -> str:
    """The ``max_sentences`` most representative sentences of ``text``, in text order.

    A sentence's score is the mean frequency (in the whole text) of its content
    words, so long sentences do not win by length alone; ties go to the earlier one.
    """
    found = sentences(text)
    if len(found) <= max_sentences:
        return " ".join(found)
    freq = Counter(content_words(text))
    top = max(freq.values(), default=1)

    def score(sentence: str) -> float:
        own = content_words(sentence)
        return sum(freq[w] / top for w in own) / len(own) if own else 0.0

    ranked = sorted(range(len(found)), key=lambda i: (-score(found[i]), i))
    keep = sorted(ranked[:max_sentences])
    return " ".join(found[i] for i in keep)


def _stem(word: str) -> str:
    """A crude English stem, so "invoices" matches "invoice" and "billing" "bill"."""
    for suffix in ("ing", "es", "ed", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def keyword_classify(
    text: str,
    labels: Sequence[str],
    keywords: Mapping[str, Sequence[str]] | None = None,
) -> tuple[str, dict[str, float]]:
    """The best label for ``text`` and every label's score (the scores sum to 1).

    A label's keywords are the words of the label itself plus ``keywords[label]``;
    its raw score counts how often their stems occur in the text. No hit at all
    gives every label the same score and the first label. Ties go to the label
    listed first.
    """
    stems = Counter(_stem(w) for w in words(text))
    raw: dict[str, float] = {}
    for label in labels:
        terms = {_stem(w) for w in content_words(label) or words(label)}
        for keyword in (keywords or {}).get(label, ()):
            terms.update(_stem(w) for w in words(keyword))
        raw[label] = float(sum(stems[t] for t in terms))
    total = sum(raw.values())
    if total == 0:
        scores = {label: round(1 / len(labels), 4) for label in labels}
        return labels[0], scores
    scores = {label: round(raw[label] / total, 4) for label in labels}
    best = max(labels, key=lambda label: (raw[label], -labels.index(label)))
    return best, scores


def degraded_chat(last_user_message: str, why: str) -> str:
    """A chat answer that says plainly that no model answered."""
    asked = " ".join(last_user_message.split())
    if len(asked) > 200:
        asked = asked[:197] + "..."
    quoted = f' Your message ("{asked}") was received,' if asked else " Your message was received,"
    return (
        f"[degraded] The language model is unavailable right now ({why}), so this is an "
        f"automatic reply, not an answer.{quoted} but please ask again later."
    )


__all__ = [
    "STOPWORDS",
    "content_words",
    "degraded_chat",
    "extractive_summary",
    "keyword_classify",
    "sentences",
    "words",
]
