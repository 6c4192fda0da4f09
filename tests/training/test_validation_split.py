"""The validation split: held out from training cases only, seeded, order-independent, recorded."""

from __future__ import annotations

from ccq.training.validation import split_validation


def _entries(counts: dict[str, int], test: int = 2) -> list[dict]:
    out = []
    for task, n in counts.items():
        out += [{"task": task, "id": f"{task}_{i:03d}", "split": "train"} for i in range(n)]
        out += [{"task": task, "id": f"{task}_t{i}", "split": "test"} for i in range(test)]
    return out


def test_fraction_per_task_never_test_cases() -> None:
    split = split_validation(_entries({"liver": 20, "colon": 8, "spleen": 1}), 0.1, seed=0)
    by_task = {t: [k for k in split.val if k.startswith(t + "/")] for t in ("liver", "colon", "spleen")}
    assert [len(v) for v in by_task.values()] == [2, 1, 0]  # round(0.1 n), at least 1 from 2 cases, never all
    assert not any("_t" in k for k in split.val + split.train)
    assert len(split.train) + len(split.val) == 29 and not set(split.train) & set(split.val)


def test_deterministic_order_independent_and_seeded() -> None:
    entries = _entries({"liver": 30, "kidney": 30})
    a = split_validation(entries, 0.2, seed=1)
    b = split_validation(list(reversed(entries)), 0.2, seed=1)
    assert set(a.val) == set(b.val)
    assert set(split_validation(entries, 0.2, seed=2).val) != set(a.val)
    # Adding a task does not change another task's held-out cases.
    c = split_validation(_entries({"liver": 30, "kidney": 30, "colon": 5}), 0.2, seed=1)
    assert {k for k in c.val if not k.startswith("colon")} == set(a.val)


def test_limits() -> None:
    entries = _entries({"liver": 40})
    assert len(split_validation(entries, 0.5, max_per_task=3).val) == 3
    assert split_validation(entries, 0.0).val == ()
