"""Audio blocks as the meters take them: ``(frames, channels)`` arrays."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Block = npt.NDArray[np.floating]


def as_frames(block: Block) -> npt.NDArray[np.float64]:
    """A block as float64 ``(frames, channels)``; a 1-D block is mono."""
    array = np.asarray(block, dtype=np.float64)
    if array.ndim == 1:
        return array[:, np.newaxis]
    if array.ndim != 2:
        raise ValueError(f"an audio block must be 1-D or (frames, channels), got shape {array.shape}")
    return array
