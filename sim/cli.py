"""`python -m stemcat.sim serve ...`: run the simulator until interrupted (a thin shell over `serve`)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

from stemcat.sim.config import RealisticSongs, SimConfig
from stemcat.sim.manifest import ManifestFormat, make_tracks_manifest
from stemcat.sim.server import SimServer
from stemcat.sim.stems import SEPARATION_TYPES, SeparationType


def serve(
    config: SimConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    tracks: int = 0,
    manifest_path: str | Path | None = None,
    manifest_types: Sequence[SeparationType] = SEPARATION_TYPES,
    manifest_format: ManifestFormat | None = None,
    out: TextIO = sys.stdout,
    stop_event: threading.Event | None = None,
) -> None:
    """Serve until Ctrl-C, SIGTERM or `stop_event`; print the base URL (and manifest path) first."""
    stop = stop_event or threading.Event()
    if threading.current_thread() is threading.main_thread():
        def _on_sigterm(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _on_sigterm)
    with SimServer(config or SimConfig(), host=host, port=port) as sim:
        out.write(f"stemcat.sim listening on {sim.base_url}\n")
        if tracks > 0:
            target = Path(manifest_path) if manifest_path else Path("suno_sim_manifest.csv")
            written = make_tracks_manifest(sim, tracks, target, types=manifest_types, fmt=manifest_format)
            out.write(f"manifest with {tracks} tracks: {written}\n")
        out.flush()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stemcat.sim", description="Local simulator of the Suno stem API.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the simulator until Ctrl-C")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8765)
    run.add_argument("--seed", type=int, default=7)
    run.add_argument("--tracks", type=int, default=0, help="create this many tracks and write a manifest")
    run.add_argument("--manifest", type=Path, default=None, help="manifest path (csv, jsonl or parquet by suffix)")
    run.add_argument("--types", nargs="+", choices=SEPARATION_TYPES, default=list(SEPARATION_TYPES))
    run.add_argument("--sample-rate", type=int, default=16000)
    run.add_argument("--channels", type=int, default=1)
    run.add_argument("--min-duration", type=float, default=3.0)
    run.add_argument("--max-duration", type=float, default=6.0)
    run.add_argument("--processing", type=float, nargs=2, default=(0.2, 0.6), metavar=("MIN_S", "MAX_S"))
    run.add_argument("--failure-rate", type=float, default=0.0)
    run.add_argument("--credits", type=int, default=10_000)
    run.add_argument("--rate-limit", type=int, default=20, help="requests per window and key; 0 disables")
    run.add_argument("--rate-window", type=float, default=10.0)
    run.add_argument("--api-key", action="append", default=None, help="accepted key (repeatable); default any")
    run.add_argument("--url-ttl", type=float, default=None)
    run.add_argument("--retention", type=float, default=14 * 24 * 3600.0)
    run.add_argument("--clock-speed", type=float, default=1.0)
    run.add_argument("--cache-dir", type=Path, default=None)
    run.add_argument(
        "--songs",
        choices=("synthetic", "realistic"),
        default="synthetic",
        help="realistic: 3-minute 44.1 kHz stereo CBR MP3s, a few songs rendered once and cached"
        " (default cache ~/.cache/stemcat/sim); the sample-rate/channels/duration flags then do not apply",
    )
    run.add_argument("--song-count", type=int, default=4, help="realistic: distinct songs in the set")
    run.add_argument("--song-duration", type=float, default=180.0, help="realistic: seconds per song")
    run.add_argument("--song-bitrate", type=int, default=128, choices=(96, 112, 128, 160, 192, 224, 256, 320))
    run.add_argument("--callback-info-key", choices=("vocal_removal_info", "vocal_separation_info"))
    run.add_argument("--duplicate-callbacks", action="store_true")
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The SimConfig a parsed `serve` command line describes."""
    return SimConfig(
        seed=args.seed,
        sample_rate=args.sample_rate,
        channels=args.channels,
        min_duration_s=args.min_duration,
        max_duration_s=args.max_duration,
        processing_s=tuple(args.processing),
        failure_rate=args.failure_rate,
        initial_credits=args.credits,
        rate_limit=args.rate_limit or None,
        rate_window_s=args.rate_window,
        api_keys=frozenset(args.api_key) if args.api_key else None,
        url_ttl_s=args.url_ttl,
        retention_s=args.retention,
        clock_speed=args.clock_speed,
        cache_dir=args.cache_dir,
        callback_info_key=args.callback_info_key or "vocal_removal_info",
        duplicate_callbacks=args.duplicate_callbacks,
        songs=args.songs,
        realistic=RealisticSongs(
            count=args.song_count, duration_s=args.song_duration, bitrate_kbps=args.song_bitrate
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m stemcat.sim`; returns the exit status."""
    args = _parser().parse_args(argv)
    serve(
        config_from_args(args),
        args.host,
        args.port,
        tracks=args.tracks,
        manifest_path=args.manifest,
        manifest_types=args.types,
    )
    return 0
