"""Decoding audio files: the one place stemcat opens a stem or a mix as audio.

``decode_job`` reads a job's files (its stems and, when there is one, the mix) in lockstep
blocks of ``block_frames`` float32 frames, once: that single pass both verifies every file
(decodes end to end; frames, sample rate, channels) and, when thresholds are given, feeds the
meters. A file that fails to open or decode, even halfway, is reported with its reason and
dropped from the pass; the other files go on. Memory stays at a few blocks per file however long
the song is. Blocking: ``pool`` runs it in worker processes. Requests and results are plain
picklable records.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from stemcat.tasks.analysis.meters import JobMeter
from stemcat.tasks.analysis.metrics import JobMetrics, QualityThresholds, StemMetrics, StreamShape
from stemcat.tasks.quiet_decoder import quiet_native_stderr

BLOCK_FRAMES = 65_536


class UndecodableAudio(Exception):
    """A file that does not open or decode as audio: ``path`` says which, ``problem`` why."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path.name}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class AudioFacts:
    """What decoding a whole file established: its length and stream shape."""

    frames: int
    sample_rate: int
    channels: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True, slots=True)
class FileCheck:
    """One file's verification: its facts when it decoded end to end, else why not."""

    path: Path
    facts: AudioFacts | None = None
    problem: str | None = None

    def require(self) -> AudioFacts:
        """The facts, or ``UndecodableAudio`` with the reason."""
        if self.facts is None:
            raise UndecodableAudio(self.path, self.problem or "does not decode")
        return self.facts


@dataclass(frozen=True, slots=True)
class JobRequest:
    """The files of one pass: stems by name, the mix, and thresholds (None: verify only, no meters)."""

    stems: dict[str, Path]
    mix: Path | None = None
    thresholds: QualityThresholds | None = None
    block_frames: int = BLOCK_FRAMES


@dataclass(frozen=True, slots=True)
class JobDecode:
    """What one pass found: every file's check and, when measured, the metrics of the files that decoded.

    ``metrics.stems`` holds only stems that decoded end to end; the SNR is None (with the reason)
    as soon as any file of the job did not.
    """

    stems: dict[str, FileCheck]
    mix: FileCheck | None
    metrics: JobMetrics | None

    def failures(self) -> list[FileCheck]:
        checks = [*self.stems.values(), *([] if self.mix is None else [self.mix])]
        return [check for check in checks if check.facts is None]


class _Stream:
    """One open file in the pass: its reader until it ends or fails."""

    def __init__(self, path: Path, audio: sf.SoundFile) -> None:
        self.path = path
        self.audio = audio
        self.frames = 0
        self.problem: str | None = None
        self.open = True

    def read(self, frames: int) -> np.ndarray | None:
        try:
            block: np.ndarray = self.audio.read(frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            self.problem, self.open = f"does not decode ({error})", False
            return None
        self.frames += block.shape[0]
        if block.shape[0] < frames:
            self.open = False
        return block

    def check(self) -> FileCheck:
        if self.problem is None and self.frames == 0:
            self.problem = "no audio frames"
        if self.problem is not None:
            return FileCheck(self.path, problem=self.problem)
        facts = AudioFacts(frames=self.frames, sample_rate=self.audio.samplerate, channels=self.audio.channels)
        return FileCheck(self.path, facts=facts)


def _open_stream(stack: ExitStack, path: Path) -> _Stream | FileCheck:
    try:
        return _Stream(path, stack.enter_context(sf.SoundFile(path)))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        return FileCheck(path, problem=f"does not open as audio ({error})")


def decode_job(request: JobRequest) -> JobDecode:
    """Decode every file of the request once, verifying each and (with thresholds) measuring them together."""
    if request.block_frames < 1:
        raise ValueError(f"block_frames must be positive, got {request.block_frames}")
    with ExitStack() as stack:
        stack.enter_context(quiet_native_stderr())  # libmpg123's resync notes go to the log, not the terminal
        opened = {name: _open_stream(stack, path) for name, path in request.stems.items()}
        mix = None if request.mix is None else _open_stream(stack, request.mix)
        stems = {name: s for name, s in opened.items() if isinstance(s, _Stream)}
        mix_stream = mix if isinstance(mix, _Stream) else None
        meter = None
        if request.thresholds is not None:
            meter = JobMeter(
                {name: StreamShape(s.audio.samplerate, s.audio.channels) for name, s in stems.items()},
                None if mix_stream is None else StreamShape(mix_stream.audio.samplerate, mix_stream.audio.channels),
                request.thresholds,
            )
        while any(s.open for s in stems.values()) or (mix_stream is not None and mix_stream.open):
            blocks: dict[str, np.ndarray] = {}
            for name, stream in stems.items():
                if stream.open and (block := stream.read(request.block_frames)) is not None:
                    blocks[name] = block
                    if meter is not None:  # measured right after decoding, while the block is in the cache
                        meter.update_stem(name, block)
            mix_block = mix_stream.read(request.block_frames) if mix_stream is not None and mix_stream.open else None
            if meter is not None:
                if mix_block is not None:
                    meter.update_mix(mix_block)
                meter.update_residual(blocks, mix_block)
        stem_checks = {
            name: s.check() if isinstance(s, _Stream) else s for name, s in opened.items()
        }
        mix_check = None if mix is None else (mix.check() if isinstance(mix, _Stream) else mix)
    metrics = None if meter is None else _usable(meter.result(), stem_checks, mix_check)
    return JobDecode(stems=stem_checks, mix=mix_check, metrics=metrics)


def _usable(metrics: JobMetrics, stems: dict[str, FileCheck], mix: FileCheck | None) -> JobMetrics:
    """Drop what a failed file spoiled: its own figures and, for any failure, the SNR."""
    good: dict[str, StemMetrics] = {name: m for name, m in metrics.stems.items() if stems[name].facts is not None}
    failed = [name for name, check in stems.items() if check.facts is None]
    mix_failed = mix is not None and mix.facts is None
    if not failed and not mix_failed:
        return metrics
    problem = metrics.snr_problem
    if failed:
        problem = "stems that do not decode: " + ", ".join(sorted(failed))
    elif mix_failed:
        problem = f"the mix does not decode ({mix.problem})" if mix is not None else problem
    return JobMetrics(stems=good, mix=None if mix_failed else metrics.mix, reconstruction_snr_db=None,
                      snr_problem=problem)


def check_opens(path: Path) -> None:
    """Open the file as audio and read its header, decoding nothing: rejects an HTML page or junk cheaply.

    Not a verification (the file may still fail halfway): the one decode is the pass that measures it.
    """
    with ExitStack() as stack:
        opened = _open_stream(stack, path)
        if isinstance(opened, FileCheck):
            opened.require()


def verify_file(path: Path, *, block_frames: int = BLOCK_FRAMES) -> AudioFacts:
    """Decode the whole file block by block (no meters); raises ``UndecodableAudio``."""
    return decode_job(JobRequest({"file": path}, block_frames=block_frames)).stems["file"].require()


def measure_files(
    stem_paths: Mapping[str, Path],
    mix_path: Path | None,
    thresholds: QualityThresholds | None = None,
    *,
    block_frames: int = BLOCK_FRAMES,
) -> JobMetrics:
    """Measure each stem, the mix, and how well the stems add back up; ``UndecodableAudio`` if any file fails."""
    result = decode_job(JobRequest(dict(stem_paths), mix_path, thresholds or QualityThresholds(), block_frames))
    for check in result.failures():
        check.require()
    if result.metrics is None:  # cannot happen: thresholds were given
        raise RuntimeError("a measuring pass returned no metrics")
    return result.metrics
