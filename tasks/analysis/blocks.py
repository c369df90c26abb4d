"""Audio blocks as the meters take them, and energies per 100 ms sub-block (pure numpy).

Every meter works on float32 ``(frames, channels)`` blocks. Energies are summed per fixed
sub-block of the stream (100 ms for the loudness gate), always over the same samples in the
same order whatever the block sizes a caller feeds, so streamed and whole-array results agree
to the last bit and no pass sums a whole block in single precision.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Block = npt.NDArray[np.floating]
Frames = npt.NDArray[np.float32]


def as_frames(block: Block) -> Frames:
    """A block as C-contiguous float32 ``(frames, channels)``; a 1-D block is mono."""
    array = np.ascontiguousarray(block, dtype=np.float32)
    if array.ndim == 1:
        return array[:, np.newaxis]
    if array.ndim != 2:
        raise ValueError(f"an audio block must be 1-D or (frames, channels), got shape {array.shape}")
    return array


def _row_energy(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    # One dot product per row (a single pass over the samples). Row by row on purpose: a batched
    # einsum sums a row in a different order than the same row alone, and the open sub-block is
    # always summed alone; so every sub-block is summed the same way whatever the block sizes.
    return np.fromiter((np.dot(row, row) for row in rows), dtype=np.float64, count=rows.shape[0])


class SubBlockEnergy:
    """Sum of squares per sub-block of ``step`` frames, fed consecutive ``(frames, width)`` blocks.

    The ``width`` values of a frame count together (e.g. both channels of a stereo stream).
    """

    def __init__(self, step: int, width: int) -> None:
        if step < 1 or width < 1:
            raise ValueError(f"step and width must be positive, got {step} and {width}")
        self.step = step
        self.width = width
        self._parts: list[npt.NDArray[np.float64]] = []
        self._open = np.zeros((step, width), dtype=np.float32)
        self._open_frames = 0
        self.frames = 0

    def update(self, block: Frames) -> None:
        frames = block.shape[0]
        self.frames += frames
        start = 0
        if self._open_frames:
            start = min(self.step - self._open_frames, frames)
            self._open[self._open_frames:self._open_frames + start] = block[:start]
            self._open_frames += start
            if self._open_frames < self.step:
                return
            self._parts.append(_row_energy(self._open.reshape(1, -1)))
            self._open_frames = 0
        full = (frames - start) // self.step
        if full:
            end = start + full * self.step
            self._parts.append(_row_energy(np.ascontiguousarray(block[start:end]).reshape(full, -1)))
            start = end
        if start < frames:
            self._open[:frames - start] = block[start:]
            self._open_frames = frames - start

    def add_silence(self, frames: int) -> None:
        """Account for ``frames`` frames of digital silence without touching samples."""
        if frames <= 0:
            return
        self.frames += frames
        if self._open_frames:
            take = min(self.step - self._open_frames, frames)
            self._open[self._open_frames:self._open_frames + take] = 0.0
            self._open_frames += take
            frames -= take
            if self._open_frames < self.step:
                return
            self._parts.append(_row_energy(self._open.reshape(1, -1)))
            self._open_frames = 0
        full, rest = divmod(frames, self.step)
        if full:
            self._parts.append(np.zeros(full))
        if rest:
            self._open[:rest] = 0.0
            self._open_frames = rest

    def energies(self) -> npt.NDArray[np.float64]:
        """One energy per complete sub-block, in stream order."""
        return np.concatenate(self._parts) if self._parts else np.zeros(0)

    def total(self) -> float:
        """Energy of everything fed, the open sub-block included."""
        tail = _row_energy(self._open[:self._open_frames].reshape(1, -1))[0] if self._open_frames else 0.0
        return float(sum(float(part.sum()) for part in self._parts) + tail)
