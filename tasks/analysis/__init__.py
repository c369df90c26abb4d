"""Measure downloaded stems and their mix: levels, loudness, clipping, silence, reconstruction SNR.

Modules, pure first: ``metrics`` (thresholds and result records), ``blocks`` (float32 blocks and
energies per 100 ms sub-block), ``loudness`` (BS.1770-4 integrated loudness), ``meters`` (peak,
RMS, clipping, the per-file and per-job meters, the reconstruction SNR); then I/O: ``decode`` (the
one place a stem or mix is opened as audio: one pass verifies every file of a job and feeds the
meters), ``pool`` (worker processes for that pass), ``analyzer`` (per-job analysis over the
ledger, async), ``checks`` (the download step's verification: a job's new stems and its mix
decoded once, verified and measured together) and ``steps`` (the Prefect tasks that
``flows/analyze.py`` and ``flows/separate.py`` run: the only module here importing Prefect).

Promises
--------
* Each downloaded file is decoded once: the pass that verifies it (frames, rate, channels) also
  measures it. A file that fails to decode, even halfway, fails alone, with its reason.
* Streaming: memory stays at a few blocks per file however long the song is, and at
  ``2 x workers`` jobs in flight however many are queued.
* Decoding and meters run in worker processes (one per core by default); a worker that dies costs
  its jobs one retry, and no worker outlives the run.
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
