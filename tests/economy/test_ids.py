"""Generated ids are short, valid ids, unique and sortable."""

from __future__ import annotations

from meshwright.economy.ids import IdGenerator
from meshwright.mesh.validation import check_id


def test_ids_are_unique_sortable_and_valid() -> None:
    gen = IdGenerator()
    ids = [gen.new("tx") for _ in range(5_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(len(i) == 21 and not check_id(i, "id") for i in ids)
