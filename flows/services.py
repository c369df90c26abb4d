"""The long-lived services the CLI starts: the callback receiver and the simulator.

They are not Prefect flows (they run until interrupted), but they assemble the same pieces
the flows do, so the CLI reaches them here rather than assembling tasks and the ledger itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def serve_callbacks(data_dir: Path, *, ledger_url: str | None, host: str, port: int,
                    ready: Callable[[str], None]) -> None:
    """Receive the API's callbacks into the ledger until Ctrl-C; `ready` gets the base URL."""
    from stemcat.catalog import Ledger
    from stemcat.services.callbacks import CallbackReceiver, load_secret

    ledger = Ledger.open(data_dir, ledger_url)
    try:
        with CallbackReceiver(ledger, load_secret(data_dir), host=host, port=port) as receiver:
            ready(receiver.base_url)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    finally:
        ledger.close()


def serve_simulator(*, host: str, port: int, seed: int, tracks: int, manifest: Path | None) -> None:
    """Run the local Suno API simulator until Ctrl-C (writing a manifest of `tracks` generated tracks)."""
    from stemcat.sim import SimConfig, serve

    serve(SimConfig(seed=seed), host=host, port=port, tracks=tracks, manifest_path=manifest)


@contextmanager
def demo_simulator(manifest: Path, *, tracks: int) -> Iterator[str]:
    """A simulator tuned for the demo (short songs, quick jobs) and a mixed manifest; yields its base URL."""
    from stemcat.sim import SimConfig, SimServer, make_tracks_manifest

    config = SimConfig(seed=2026, sample_rate=32000, channels=2, min_duration_s=6.0, max_duration_s=12.0,
                       processing_s=(1.0, 3.0))
    with SimServer(config, port=0) as sim:
        make_tracks_manifest(sim, tracks, manifest, types=("separate_vocal", "split_stem"))
        yield sim.base_url
