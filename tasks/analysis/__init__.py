"""Measure downloaded stems and their mix: levels, loudness, clipping, silence, reconstruction SNR.

Modules, pure first: ``metrics`` (thresholds and result records), ``frames`` (the block shape
meters take), ``loudness`` (BS.1770-4 integrated loudness), ``meters`` (levels, clipping, the
per-file and per-job meters, the reconstruction SNR); then I/O: ``decode`` (the one place a
stem or mix is opened as audio: verification and measurement in one pass), ``analyzer``
(per-job orchestration over the ledger, async) and ``steps`` (the Prefect tasks that
``flows/analyze.py`` and ``flows/separate.py`` run).

Promises
--------
* Streaming: memory stays at a few blocks per file however long the song is.
* A file that does not decode raises ``UndecodableAudio`` (naming the file and the reason).
"""

from stemcat.tasks.analysis.decode import AudioFacts, UndecodableAudio
from stemcat.tasks.analysis.metrics import (
    DEFAULT_MIN_SNR_DB,
    DEFAULT_SILENT_THRESHOLD_DBFS,
    JobMetrics,
    QualityThresholds,
    StemMetrics,
    StreamShape,
)

__all__ = [
    "DEFAULT_MIN_SNR_DB",
    "DEFAULT_SILENT_THRESHOLD_DBFS",
    "AudioFacts",
    "JobMetrics",
    "QualityThresholds",
    "StemMetrics",
    "StreamShape",
    "UndecodableAudio",
]
