"""Local simulator of the Suno stem-separation API: a real HTTP server on loopback for tests, demo and benchmarks.

It shares no code with `suno_client`; payload shapes follow tests/fixtures/contract/.
"""

from suno_sim.admin import AdminClient
from suno_sim.cli import serve
from suno_sim.config import FaultSpec, SimConfig
from suno_sim.manifest import make_tracks_manifest
from suno_sim.models import Charge, SeparationTaskView, SimStats, SimTrack, TrackTruth
from suno_sim.server import SimServer, SimServerError

__all__ = [
    "AdminClient",
    "Charge",
    "FaultSpec",
    "SeparationTaskView",
    "SimConfig",
    "SimServer",
    "SimServerError",
    "SimStats",
    "SimTrack",
    "TrackTruth",
    "make_tracks_manifest",
    "serve",
]
