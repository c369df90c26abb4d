"""Block-wise signal conversions (pure): channel count and sample rate.

``StreamingResampler`` gives the same samples as one ``scipy.signal.resample_poly`` call over
the whole signal, while holding only a block plus a short margin: each block is resampled
with enough input on both sides to cover the polyphase filter, and only the outputs whose
filter window lies fully inside the held input are emitted.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy.signal import firwin, resample_poly

Block = NDArray[np.float64]

# resample_poly's default FIR has a half-length of 10 * max(up, down) taps at the upsampled rate.
_HALF_LENGTH_FACTOR = 10
_KAISER_BETA = 5.0


@lru_cache(maxsize=16)
def _lowpass(up: int, down: int) -> NDArray[np.float64]:
    """resample_poly's default anti-aliasing filter, designed once per rate pair instead of per block."""
    max_rate = max(up, down)
    taps = firwin(2 * _HALF_LENGTH_FACTOR * max_rate + 1, 1.0 / max_rate, window=("kaiser", _KAISER_BETA))
    taps.setflags(write=False)  # shared between resamplers (resample_poly copies it before scaling)
    return np.asarray(taps, dtype=np.float64)


def convert_channels(block: Block, channels: int) -> Block:
    """Average to mono, or repeat mono to ``channels``; (frames, channels) in and out."""
    have = block.shape[1]
    if have == channels:
        return block
    if channels == 1:
        return np.asarray(block.mean(axis=1, keepdims=True), dtype=np.float64)
    if have == 1:
        return np.repeat(block, channels, axis=1)
    raise ValueError(f"cannot convert {have} channels to {channels}")


class StreamingResampler:
    """Resample (frames, channels) blocks from ``source_rate`` to ``target_rate`` as they arrive."""

    def __init__(self, source_rate: int, target_rate: int) -> None:
        if source_rate <= 0 or target_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {source_rate} and {target_rate}")
        divisor = math.gcd(source_rate, target_rate)
        self.up = target_rate // divisor
        self.down = source_rate // divisor
        # Input samples on each side an output needs, rounded up to a multiple of `down` so that
        # every segment starts on an input index that maps to a whole output index.
        reach = math.ceil(_HALF_LENGTH_FACTOR * max(self.up, self.down) / self.up) + 1
        self._margin = self.down * math.ceil(reach / self.down)
        self._buffer: Block | None = None
        self._buffer_start = 0  # global input index of self._buffer[0], a multiple of `down`
        self._received = 0
        self._emitted = 0  # global output samples already returned

    @property
    def identity(self) -> bool:
        return self.up == self.down

    def process(self, block: Block) -> Block:
        """Feed a block; returns the output samples that are now final (possibly none)."""
        if self.identity:
            self._emitted += len(block)
            return block
        self._buffer = block if self._buffer is None else np.concatenate([self._buffer, block])
        self._received += len(block)
        ready_input = ((self._received - self._margin) // self.down) * self.down
        if ready_input <= 0:
            return self._empty(block.shape[1])
        return self._emit(self._buffer, ready_input * self.up // self.down, drop_until=ready_input - self._margin)

    def flush(self, channels: int) -> Block:
        """The remaining output once the input has ended: ceil(total * target / source) samples in all."""
        if self.identity or self._buffer is None:
            return self._empty(channels)
        total_out = -(-self._received * self.up // self.down)
        return self._emit(self._buffer, total_out, drop_until=None)

    def _emit(self, buffer: Block, output_end: int, drop_until: int | None) -> Block:
        resampled = resample_poly(buffer, self.up, self.down, axis=0, window=_lowpass(self.up, self.down))
        offset = self._buffer_start * self.up // self.down
        chunk = resampled[self._emitted - offset : output_end - offset]
        self._emitted = max(self._emitted, output_end)
        if drop_until is not None and drop_until > self._buffer_start:
            self._buffer = buffer[drop_until - self._buffer_start :]
            self._buffer_start = drop_until
        return np.asarray(chunk, dtype=np.float64)

    @staticmethod
    def _empty(channels: int) -> Block:
        return np.zeros((0, channels), dtype=np.float64)
