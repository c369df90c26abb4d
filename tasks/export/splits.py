"""Deterministic dataset splits (pure logic).

A track's split depends only on its generation task id, so every audio variation of one
generation lands on the same side, and adding tracks later never moves an existing one:
the task id is hashed (BLAKE2b) to a point in [0, 1) and the point falls into one of the
cumulative ratio intervals, in the order the ratios are given.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SplitRatios = Mapping[str, float]

DEFAULT_RATIOS: dict[str, float] = {"train": 0.8, "valid": 0.1, "test": 0.1}
# When the variations of one task pin different splits, the one kept out of training wins.
PIN_PRIORITY: tuple[str, ...] = ("test", "valid", "train")

_SPLIT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_HASH_BYTES = 8
_RATIO_TOLERANCE = 1e-6


class SplitRatioError(ValueError):
    """Ratios that do not describe a partition of [0, 1)."""


def parse_ratios(text: str) -> dict[str, float]:
    """Parse ``"train=0.8,valid=0.1,test=0.1"``; order is kept, ratios must sum to 1."""
    ratios: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise SplitRatioError(f"expected name=ratio, got {part.strip()!r} (e.g. 'train=0.8,valid=0.1,test=0.1')")
        if name in ratios:
            raise SplitRatioError(f"split {name!r} is named twice")
        try:
            ratios[name] = float(value)
        except ValueError as error:
            raise SplitRatioError(f"ratio of {name!r} is not a number: {value.strip()!r}") from error
    return validate_ratios(ratios)


def validate_ratios(ratios: SplitRatios) -> dict[str, float]:
    """Check names and values; returns a plain ordered copy."""
    if not ratios:
        raise SplitRatioError("at least one split is needed")
    for name, ratio in ratios.items():
        if not _SPLIT_NAME.fullmatch(name):
            raise SplitRatioError(f"split name {name!r} must be lowercase letters, digits, '-' or '_'")
        if not math.isfinite(ratio) or ratio < 0:
            raise SplitRatioError(f"ratio of {name!r} must be a non-negative number, got {ratio!r}")
    total = math.fsum(ratios.values())
    if abs(total - 1.0) > _RATIO_TOLERANCE:
        raise SplitRatioError(f"ratios must sum to 1, they sum to {total:g}")
    return dict(ratios)


def hash_unit(task_id: str) -> float:
    """A stable point in [0, 1) for a task id (the same on every machine and Python version)."""
    digest = hashlib.blake2b(task_id.encode("utf-8"), digest_size=_HASH_BYTES, person=b"stemcat-split").digest()
    return int.from_bytes(digest, "big") / float(1 << (8 * _HASH_BYTES))


def split_for(task_id: str, ratios: SplitRatios, pinned: str | None = None) -> str:
    """The split of a generation task: ``pinned`` when given, else by the hash of ``task_id``."""
    if pinned:
        return pinned
    point = hash_unit(task_id)
    cumulative = 0.0
    last_nonempty = ""
    for name, ratio in ratios.items():
        if ratio <= 0:
            continue
        last_nonempty = name
        cumulative += ratio
        if point < cumulative:
            return name
    # Rounding can leave the top of [0, 1) a hair past the last bound.
    if not last_nonempty:
        raise SplitRatioError("every ratio is zero")
    return last_nonempty


def resolve_pin(pins: Iterable[str | None]) -> str | None:
    """One pinned split for a task from its tracks' pins; conflicts resolve by ``PIN_PRIORITY``."""
    named = {pin for pin in pins if pin}
    if not named:
        return None
    ranked = sorted(named, key=lambda pin: (PIN_PRIORITY.index(pin) if pin in PIN_PRIORITY else len(PIN_PRIORITY), pin))
    return ranked[0]


@dataclass(frozen=True, slots=True)
class SplitRequest:
    """What a split decision needs to know about one track."""

    key: str
    task_id: str
    pinned: str | None


@dataclass(frozen=True, slots=True)
class SplitAssignment:
    """Splits for new tracks, plus notes on pins that could not be honoured."""

    splits: dict[str, str]
    notes: tuple[str, ...]


def assign_splits(
    requests: Iterable[SplitRequest], ratios: SplitRatios, existing_task_splits: Mapping[str, str]
) -> SplitAssignment:
    """Split every new track; a task already exported keeps its split, whatever a pin now says."""
    by_task: dict[str, list[SplitRequest]] = {}
    for request in requests:
        by_task.setdefault(request.task_id, []).append(request)
    splits: dict[str, str] = {}
    notes: list[str] = []
    for task_id, group in sorted(by_task.items()):
        pins = {r.pinned for r in group if r.pinned}
        pin = resolve_pin(pins)
        if len(pins) > 1:
            notes.append(f"task {task_id}: variations pin {sorted(pins)}; all go to {pin!r}")
        earlier = existing_task_splits.get(task_id)
        if earlier is not None:
            if pin is not None and pin != earlier:
                notes.append(f"task {task_id}: pinned to {pin!r} but already exported in {earlier!r}; kept there")
            split = earlier
        else:
            split = split_for(task_id, ratios, pin)
        for request in group:
            splits[request.key] = split
    return SplitAssignment(splits=splits, notes=tuple(notes))
