"""libmpg123's messages about a damaged MP3 stay off stderr; everything else written there is kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SCRIPT = """
import logging, os, sys, threading
import soundfile as sf
from stemcat.tasks.quiet_decoder import quiet_native_stderr

logging.basicConfig(level=logging.DEBUG if sys.argv[3] == "debug" else logging.WARNING, stream=sys.stdout)
path, quiet = sys.argv[1], sys.argv[2] == "quiet"
before = os.fstat(2).st_ino

def decode():
    try:
        with sf.SoundFile(path) as audio:
            for _ in audio.blocks(4096):
                pass
    except Exception:
        pass

def quietly():
    with quiet_native_stderr():
        decode()

if quiet:
    with quiet_native_stderr():
        print("kept: a python line while decoding", file=sys.stderr, flush=True)
        threads = [threading.Thread(target=quietly) for _ in range(4)]
        for t in threads: t.start()
        decode()
        for t in threads: t.join()
else:
    decode()
assert os.fstat(2).st_ino == before, "stderr not restored"
print("kept: after decoding", file=sys.stderr, flush=True)
"""


def _damaged_mp3(path: Path) -> Path:
    rng = np.random.default_rng(5)
    sf.write(path, (rng.standard_normal((44_100 * 2, 2)) * 0.1).astype("float32"), 44_100, format="MP3")
    data = path.read_bytes()
    path.write_bytes(data[:5_000] + rng.bytes(3_000) + data[8_000:])
    return path


def _run(mp3: Path, mode: str, level: str = "warning") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, str(mp3), mode, level], capture_output=True, text=True,
                          timeout=120)


def test_decoder_messages_are_kept_off_stderr_and_the_rest_is_not(tmp_path: Path) -> None:
    mp3 = _damaged_mp3(tmp_path / "damaged.mp3")
    loud = _run(mp3, "loud")
    assert loud.returncode == 0, loud.stderr
    assert "Note: " in loud.stderr or "libmpg123" in loud.stderr, "the damaged file no longer makes libmpg123 talk"

    quiet = _run(mp3, "quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.splitlines() == ["kept: a python line while decoding", "kept: after decoding"]

    debug = _run(mp3, "quiet", "debug")  # not lost: the decoder's lines are this module's DEBUG records
    assert "decoder: " in debug.stdout and ("Note: " in debug.stdout or "libmpg123" in debug.stdout)
