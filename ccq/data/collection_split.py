"""The train/test split of one dataset: explicit case lists, a deterministic hashed split, or all train."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ccq.utils.config import Config, FieldError


@dataclass(frozen=True)
class Split(Config):
    """Which cases of a dataset are for training and which for testing.

    Explicit lists (``train`` None = every case not in ``test``), or a deterministic hashed split
    (``test_fraction`` + ``seed``), or neither: every case trains.
    """

    train: tuple[str, ...] | None = None
    test: tuple[str, ...] = ()
    test_fraction: float | None = None
    seed: int = 0
    """Only with ``test_fraction``."""

    config_name = "split"

    def _validate(self) -> None:
        if self.test_fraction is not None:
            if self.train is not None or self.test:
                raise FieldError("", "give either train/test lists or test_fraction (+ seed), not both")
            if not 0.0 <= self.test_fraction < 1.0:
                self._fail("test_fraction", "a number in [0, 1)")
            object.__setattr__(self, "test_fraction", float(self.test_fraction))
        elif self.seed != 0:
            raise FieldError("seed", "seed only applies with split.test_fraction")
        for name, ids in (("train", self.train or ()), ("test", self.test)):
            seen: set[str] = set()
            for case in ids:
                if case in seen:
                    raise FieldError(name, f"case {case!r} is listed twice")
                seen.add(case)
        both = set(self.train or ()) & set(self.test)
        if both:
            raise FieldError("test", f"case {sorted(both)[0]!r} is also in split.train")

    def assign(self, case_ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """(train, test) case ids among the ``case_ids`` found on disk, in the order given."""
        ids = list(case_ids)
        if self.test_fraction is not None:
            # Rank by a hash of (seed, case id): stable across machines and Python versions, unlike hash().
            ranked = sorted(ids, key=lambda c: hashlib.sha256(f"{self.seed}/{c}".encode()).hexdigest())
            n_test = round(len(ids) * self.test_fraction)
            if self.test_fraction > 0 and len(ids) >= 2:
                n_test = min(max(n_test, 1), len(ids) - 1)
            test_set = set(ranked[:n_test])
            return [c for c in ids if c not in test_set], [c for c in ids if c in test_set]
        known = set(ids)
        missing = [c for c in (*(self.train or ()), *self.test) if c not in known]
        if missing:
            raise FieldError(
                "split",
                f"{len(missing)} listed case(s) are not among the {len(ids)} cases found, e.g. {missing[:3]}",
            )
        test_set = set(self.test)
        train_set = set(self.train) if self.train is not None else known - test_set
        return [c for c in ids if c in train_set], [c for c in ids if c in test_set]

    def to_dict(self) -> dict[str, Any] | None:  # type: ignore[override]
        """None when there is nothing to write (every case trains)."""
        if self.test_fraction is not None:
            return {"test_fraction": self.test_fraction, "seed": self.seed}
        if self.train is None and not self.test:
            return None
        out: dict[str, Any] = {} if self.train is None else {"train": list(self.train)}
        out["test"] = list(self.test)
        return out
