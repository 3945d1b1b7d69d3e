"""Splitting an amount pro rata, exact to the minor unit."""

from __future__ import annotations

from collections.abc import Sequence


def pro_rata(amount: int, weights: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """Split ``amount`` among ``(key, weight)`` pairs in proportion to the weights.

    Each key gets ``floor(amount * weight / total)``; the units left over go one
    each to the largest remainders, ties to the smaller key (largest remainder
    method), so the shares sum to ``amount`` exactly and the split depends only on
    its inputs. A key given twice counts with the sum of its weights; keys with
    weight 0 get nothing; with no positive weight nobody
    gets anything. Returned in key order, zero shares left out.
    """
    if amount < 0:
        raise ValueError("amount must not be negative")
    combined: dict[str, int] = {}
    for key, weight in weights:  # a key given twice holds both weights
        if weight > 0:
            combined[key] = combined.get(key, 0) + weight
    positive = sorted(combined.items())
    total = sum(w for _, w in positive)
    if total == 0 or amount == 0:
        return []
    shares: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for key, weight in positive:
        share, remainder = divmod(amount * weight, total)
        shares[key] = share
        remainders.append((-remainder, key))
    left = amount - sum(shares.values())
    for _, key in sorted(remainders)[:left]:
        shares[key] += 1
    return [(key, share) for key, share in sorted(shares.items()) if share > 0]


__all__ = ["pro_rata"]
