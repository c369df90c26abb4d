"""Local simulator of the Suno stem-separation API: a real HTTP server on loopback for tests, demo and benchmarks.

It shares no code with `stemcat.client`; payload shapes follow tests/fixtures/contract/.
"""

from stemcat.sim.admin import AdminClient
from stemcat.sim.cli import serve
from stemcat.sim.config import FaultSpec, RealisticSongs, SimConfig
from stemcat.sim.manifest import make_tracks_manifest
from stemcat.sim.models import Charge, SeparationTaskView, SimStats, SimTrack, TrackTruth
from stemcat.sim.render import default_song_cache, realistic_song_files
from stemcat.sim.server import SimServer, SimServerError

__all__ = [
    "AdminClient",
    "Charge",
    "FaultSpec",
    "RealisticSongs",
    "SeparationTaskView",
    "SimConfig",
    "SimServer",
    "SimServerError",
    "SimStats",
    "SimTrack",
    "TrackTruth",
    "default_song_cache",
    "make_tracks_manifest",
    "realistic_song_files",
    "serve",
]
