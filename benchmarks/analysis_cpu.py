"""`python -m benchmarks.analysis_cpu`: what analysing one split_stem job costs, by stage, on real-length audio.

A job is 12 stems and the mix, each ``--seconds`` (180) of 44.1 kHz stereo. Reported:

* CPU-seconds per job (this process's ``time.process_time``, best of ``--repeats``) for a decode
  of every file without meters (what download verification costs) and for the decode with every
  meter, and the meters' share: (decode+meters - decode) / decode;
* the meters alone on in-memory blocks of the first ``--breakdown-seconds`` of each file, by
  meter (levels and energy, K-weighted loudness, reconstruction SNR), each ÷ the decode of the
  same samples;
* jobs per second through ``AnalysisPool`` with 1..N worker processes (wall clock: only
  meaningful on an otherwise idle machine).

The decode is pluggable: ``--format flac`` (default) or ``wav`` synthesizes the job here and
writes it once to the cache directory (cheap); ``--format mp3`` encodes it once too (about 4-10
CPU-s a file, cached); ``--format realistic`` takes the simulator's first realistic song (12 stems,
some silent, and the mix: 128 kbps CBR MP3, rendered once into the simulator's cache, about a
minute of CPU the first time); ``--audio-dir DIR`` measures real files instead (every ``*.mp3``/``*.flac``/
``*.wav`` in DIR is a stem, ``mix.*`` the mix). MP3 costs more to decode than FLAC, so the meters'
share of the decode depends on the format: quote it with the format.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.environment import default_cache_dir
from stemcat.tasks.analysis.blocks import SubBlockEnergy, as_frames
from stemcat.tasks.analysis.decode import JobRequest, decode_job
from stemcat.tasks.analysis.loudness import LoudnessMeter
from stemcat.tasks.analysis.meters import JobMeter, StemMeter
from stemcat.tasks.analysis.metrics import QualityThresholds, StreamShape
from stemcat.tasks.analysis.pool import AnalysisPool, default_workers

RATE = 44_100
BLOCK = 65_536
STEMS = ("vocals", "backing_vocals", "drums", "bass", "guitar", "keyboard", "percussion", "strings", "synth",
         "fx", "brass", "woodwinds")


def _stem_signal(index: int, seconds: float) -> np.ndarray:
    """A stem-like stereo signal: a pitched part with vibrato, noise hits, sections of different level."""
    rng = np.random.default_rng(index)
    t = np.arange(round(seconds * RATE)) / RATE
    pitch = 55.0 * 2 ** (index / 3)
    tone = np.sin(2 * np.pi * (pitch * t + 2.0 * np.sin(2 * np.pi * 4.0 * t)))
    hits = ((t * (1 + index % 4)) % 1.0 < 0.08) * rng.standard_normal(t.size)
    envelope = np.where((t + 7 * index) % 40.0 < 12.0, 0.1, 1.0)
    left = envelope * (0.15 * tone + 0.05 * hits)
    right = envelope * (0.12 * tone + 0.05 * np.roll(hits, 17))
    return (np.stack([left, right], axis=1) / 4).astype(np.float32)


def synthesize_job(directory: Path, fmt: str, seconds: float) -> tuple[dict[str, Path], Path]:
    """The job's files in ``directory`` (written once, reused)."""
    directory.mkdir(parents=True, exist_ok=True)
    stems = {name: directory / f"{name}.{fmt}" for name in STEMS}
    mix = directory / f"mix.{fmt}"
    if all(path.exists() for path in [*stems.values(), mix]):
        return stems, mix
    total = None
    for index, (name, path) in enumerate(stems.items()):
        signal = _stem_signal(index, seconds)
        total = signal.copy() if total is None else total + signal
        _write(path, signal, fmt)
    _write(mix, total, fmt)
    return stems, mix


def _write(path: Path, signal: np.ndarray, fmt: str) -> None:
    part = path.with_name(path.name + ".part")
    subtype = "FLOAT" if fmt == "wav" else None
    sf.write(part, signal, RATE, format=fmt.upper(), subtype=subtype)
    os.replace(part, path)


def realistic_job(cache_root: Path, seconds: float) -> tuple[dict[str, Path], Path]:
    """Song 0 of the simulator's realistic set, rendered once into its cache (shared with the simulator)."""
    from stemcat.sim.config import RealisticSongs
    from stemcat.sim.songs import song_name
    from stemcat.sim.sources import RealisticSource
    from stemcat.sim.stems import INSTRUMENT_STEMS

    source = RealisticSource(RealisticSongs(duration_s=seconds), cache_root)
    folder = song_name(0)
    paths = {name: source.directory / folder / f"{name}.mp3" for name in (*INSTRUMENT_STEMS, "mix")}
    for name, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            source.render(folder, name, path)
    mix = paths.pop("mix")
    return paths, mix


def files_in(directory: Path) -> tuple[dict[str, Path], Path | None]:
    found = sorted(p for p in directory.iterdir() if p.suffix in {".mp3", ".flac", ".wav"})
    mix = next((p for p in found if p.stem == "mix"), None)
    return {p.stem: p for p in found if p != mix}, mix


def cpu(fn: Callable[[], object], repeats: int) -> float:
    """Best CPU time of ``repeats`` calls (the least disturbed by other work on the machine)."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return min(times)


def breakdown(stems: dict[str, Path], mix: Path | None, seconds: float, repeats: int) -> dict[str, float]:
    """Each meter's CPU on the first ``seconds`` of every file, held in memory, ÷ decoding those samples."""
    frames = round(seconds * RATE)
    paths = [*stems.values(), *([] if mix is None else [mix])]

    def decode() -> list[list[np.ndarray]]:
        out = []
        for path in paths:
            with sf.SoundFile(path) as audio:
                out.append([audio.read(min(BLOCK, frames - start), dtype="float32", always_2d=True)
                            for start in range(0, frames, BLOCK)])
        return out

    blocks = decode()
    decode_s = cpu(decode, repeats)
    shape = [StreamShape(RATE, b[0].shape[1]) for b in blocks]

    def levels() -> None:
        for file_blocks in blocks:
            energy = SubBlockEnergy(round(0.1 * RATE), file_blocks[0].shape[1])
            for block in file_blocks:
                frames_ = as_frames(block)
                max(float(frames_.max()), -float(frames_.min()))
                energy.update(frames_)

    def loudness() -> None:
        for file_blocks in blocks:
            meter = LoudnessMeter(RATE, file_blocks[0].shape[1])
            for block in file_blocks:
                meter.update_frames(as_frames(block))
            meter.integrated_lufs()

    def per_file() -> None:
        for file_blocks in blocks:
            meter = StemMeter(RATE, file_blocks[0].shape[1], QualityThresholds())
            for block in file_blocks:
                meter.update_frames(as_frames(block))
            meter.result()

    def whole_job() -> None:
        names = list(stems)
        meter = JobMeter(dict(zip(names, shape, strict=False)), shape[-1] if mix is not None else None)
        for step in range(len(blocks[0])):
            meter.update({n: blocks[i][step] for i, n in enumerate(names)}, blocks[-1][step] if mix else None)
        meter.result()

    per_file_s = cpu(per_file, repeats)
    return {
        "decode_s": decode_s,
        "levels": cpu(levels, repeats) / decode_s,
        "loudness": cpu(loudness, repeats) / decode_s,
        "per_file_meters": per_file_s / decode_s,
        "snr": max(0.0, cpu(whole_job, repeats) - per_file_s) / decode_s,
    }


def throughput(stems: dict[str, Path], mix: Path | None, workers: int, jobs: int) -> float:
    """Jobs per second (wall clock) through a pool of ``workers`` processes, after one warm-up job each."""
    request = JobRequest(stems, mix, QualityThresholds())
    with AnalysisPool(workers) as pool:

        async def run(count: int) -> None:
            await asyncio.gather(*(pool.run(decode_job, request) for _ in range(count)))

        asyncio.run(run(workers))  # start every worker (spawn + imports) outside the timing
        started = time.monotonic()
        asyncio.run(run(jobs))
        return jobs / (time.monotonic() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--format", choices=("flac", "wav", "mp3", "realistic"), default="flac")
    parser.add_argument("--audio-dir", type=Path, help="measure these files instead of synthesized ones")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--breakdown-seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, nargs="*", help="pool sizes to time (default 1..cores)")
    parser.add_argument("--jobs-per-worker", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir() / "analysis")
    args = parser.parse_args(argv)

    if args.audio_dir:
        stems, mix = files_in(args.audio_dir)
        source = f"files in {args.audio_dir}"
    elif args.format == "realistic":
        stems, mix = realistic_job(args.cache_dir.parent / "sim", args.seconds)
        source = f"the simulator's realistic song 0, {len(stems)} stems + mix, 128 kbps MP3"
    else:
        directory = args.cache_dir / f"{args.format}-{args.seconds:g}s"
        stems, mix = synthesize_job(directory, args.format, args.seconds)
        source = f"synthesized {args.format.upper()}, {len(stems)} stems + mix, {args.seconds:g} s, 44.1 kHz stereo"
    print(f"# analysis CPU per split_stem job ({source})\n")
    decode_only = cpu(lambda: decode_job(JobRequest(stems, mix)), args.repeats)
    measured = cpu(lambda: decode_job(JobRequest(stems, mix, QualityThresholds())), args.repeats)
    print("| stage | CPU-s per job | ÷ decode |\n|---|---|---|")
    print(f"| decode only (verification) | {decode_only:.2f} | 1.00 |")
    print(f"| decode + every meter (one pass) | {measured:.2f} | {measured / decode_only:.2f} |")
    print(f"| meters (difference) | {measured - decode_only:.2f} | {(measured - decode_only) / decode_only:.2f} |")
    parts = breakdown(stems, mix, min(args.breakdown_seconds, args.seconds), args.repeats)
    print(f"\nMeters on the first {min(args.breakdown_seconds, args.seconds):g} s of every file, in memory, "
          f"÷ decoding the same samples ({parts['decode_s']:.2f} CPU-s):\n")
    print("| meter | ÷ decode |\n|---|---|")
    for key, label in (("levels", "peak, clipping, RMS (sub-block energies)"),
                       ("loudness", "K-weighting + gated loudness"),
                       ("per_file_meters", "all per-file meters together"),
                       ("snr", "reconstruction SNR (the job's extra work)")):
        print(f"| {label} | {parts[key]:.2f} |")
    sizes = args.workers or list(range(1, default_workers() + 1))
    print(f"\nThroughput (wall clock, {os.cpu_count()} cores, {args.jobs_per_worker} jobs per worker):\n")
    print("| worker processes | jobs/s |\n|---|---|")
    rates = {n: throughput(stems, mix, n, max(2, n * args.jobs_per_worker)) for n in sizes}
    for n, rate in rates.items():
        print(f"| {n} | {rate:.3f} |")
    if len(rates) > 1:
        print(f"\nspeed-up {max(sizes)} vs 1 worker: {rates[max(sizes)] / rates[min(sizes)]:.2f}x"
              f" (median rate {statistics.median(rates.values()):.3f} jobs/s)")


if __name__ == "__main__":
    main()
