"""Row 6: CPU-seconds per real split_stem job, by stage, ÷ one decode of its files.

A job is one of the simulator's realistic songs: 12 stems and the mix, 128 kbps CBR MP3, 44.1 kHz
stereo (3 minutes in full mode; the quick smoke size renders a 5-second song into the session's
cache). Every stage runs in this process and is timed in CPU-seconds (``time.process_time``,
best of ``repeats``, the least disturbed by other work on the machine), summed over the songs:

* hashing and writing: what a download does with the bytes once they arrived (sha256 of the
  stream, written in 64 KiB chunks to a ``.part`` file, fsynced, as ``client.download`` does);
  the HTTP transfer itself is row 3's;
* decode + verify: ``decode_job`` without meters (every file decoded end to end, once);
* meters: ``decode_job`` with the quality thresholds (the same single pass feeding every meter)
  minus the decode alone.

The ratio is (hashing + decode + meters) ÷ one decode of the job's files.
"""

from __future__ import annotations

import hashlib
import os
import statistics
from pathlib import Path

from benchmarks.analysis_cpu import cpu
from benchmarks.environment import BenchEnv
from benchmarks.table import Row
from stemcat.sim import RealisticSongs, default_song_cache, realistic_song_files
from stemcat.tasks.analysis.decode import JobRequest, decode_job
from stemcat.tasks.analysis.metrics import QualityThresholds

GOAL = 1.5
QUICK_SONGS = RealisticSongs(count=1, duration_s=5.0)
FULL_SONGS = RealisticSongs()
CHUNK = 64 * 1024

Job = tuple[dict[str, Path], Path]


def song_set(env: BenchEnv, *, quick: bool) -> tuple[Path, RealisticSongs]:
    """Where the realistic songs are cached and which set: full songs in the shared cache, short ones per session."""
    if quick:
        return env.cache_dir / "realistic", QUICK_SONGS
    return default_song_cache(), FULL_SONGS


def describe_songs(spec: RealisticSongs) -> str:
    return (f"{spec.count} realistic song{'s' if spec.count > 1 else ''} of {spec.duration_s:g} s (12 stems + mix, "
            f"{spec.bitrate_kbps} kbps CBR MP3, 44.1 kHz stereo)")


def realistic_jobs(env: BenchEnv, *, quick: bool) -> list[Job]:
    """Each realistic song as a split_stem job's files (rendered first when the cache is cold)."""
    root, spec = song_set(env, quick=quick)
    songs = realistic_song_files(root, spec)
    return [({name: path for name, path in song.items() if name != "mix"}, song["mix"]) for song in songs]


def hash_and_write(paths: list[Path], scratch: Path) -> None:
    """What a download does with arrived bytes: sha256 as they stream, written in chunks, fsynced, renamed."""
    for path in paths:
        digest = hashlib.sha256()
        part = scratch / (path.name + ".part")
        with path.open("rb") as source, part.open("wb") as sink:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                sink.write(chunk)
            sink.flush()
            os.fsync(sink.fileno())
        digest.hexdigest()
        os.replace(part, scratch / path.name)


def job_stages(job: Job, scratch: Path, repeats: int) -> dict[str, float]:
    """CPU-seconds of each stage for one job (best of ``repeats`` each)."""
    stems, mix = job
    hashing = cpu(lambda: hash_and_write([*stems.values(), mix], scratch), repeats)
    decode = cpu(lambda: decode_job(JobRequest(stems, mix)), repeats)
    decode_and_meters = cpu(lambda: decode_job(JobRequest(stems, mix, QualityThresholds())), repeats)
    return {"hash_write": hashing, "decode": decode, "meters": max(0.0, decode_and_meters - decode),
            "decode_and_meters": decode_and_meters}


def measure(env: BenchEnv, *, quick: bool, repeats: int) -> list[Row]:
    _root, spec = song_set(env, quick=quick)
    jobs = realistic_jobs(env, quick=quick)
    scratch = env.scratch("analysis-cpu")
    per_job = [job_stages(job, scratch, repeats) for job in jobs]
    total = {key: sum(stage[key] for stage in per_job) / len(per_job) for key in per_job[0]}
    decode = total["decode"]
    whole = total["hash_write"] + total["decode_and_meters"]
    ratio = whole / decode
    per_song = [(s["hash_write"] + s["decode_and_meters"]) / s["decode"] for s in per_job]
    spread = f"; per song {min(per_song):.2f}–{max(per_song):.2f}×" if len(per_song) > 1 else ""
    verdict = "met" if ratio <= GOAL else "not met"
    return [Row(
        "6", "CPU-s per real split_stem job by stage ÷ one decode of its files",
        (f"hash + write {total['hash_write']:.2f} ({total['hash_write'] / decode:.2f}×) · decode + verify "
         f"{decode:.2f} (1.00×) · meters {total['meters']:.2f} ({total['meters'] / decode:.2f}×) · "
         f"total {whole:.2f} CPU-s"),
        baseline=f"one decode of the job's 13 files: {decode:.2f} CPU-s",
        ratio=f"{ratio:.2f}× (goal ≤ {GOAL:g}: {verdict})",
        conditions=(f"mean over {describe_songs(spec)}{spread}; CPU-s in this process (time.process_time), "
                    f"best of {repeats} per stage; decode and meters are one pass (`decode_job`), meters = the "
                    f"pass with thresholds − the pass without; hash + write = sha256 of the bytes, 64 KiB writes, "
                    f"fsync, rename (the HTTP transfer is row 3's); median decode per song "
                    f"{statistics.median(s['decode'] for s in per_job):.2f} CPU-s"),
    )]
