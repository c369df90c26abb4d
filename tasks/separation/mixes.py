"""Fetch a song's original mix (free) so its stems can be compared with it.

The mix lands at ``DATA_DIR/mixes/{audio_id}.mp3`` after it was streamed to a temp file
under a byte cap, checked to open as audio (its header: an HTML error page is refused and the
next URL tried), and renamed. It is decoded only once, by the analysis pass that measures it
(``tasks.analysis``): that pass is its verification, and a mix that does not decode is removed
there (free to fetch again). A mix already on disk is reused. Where it comes from,
in order: the ``originUrl`` a separation record reported, the track's ``audioUrl`` from the
manifest or the generation record, and as a last resort a (free, rate-limited)
music-generation record-info call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from stemcat.catalog.atomic_files import move_into_place, temp_path_for
from stemcat.client import SunoClient, SunoError
from stemcat.tasks.analysis.decode import UndecodableAudio, check_opens
from stemcat.tasks.paths import check_id

log = logging.getLogger(__name__)

MIXES_DIRNAME = "mixes"


def mix_relpath(audio_id: str) -> Path:
    """``mixes/{audio_id}.mp3``, relative to the data directory."""
    return Path(MIXES_DIRNAME) / f"{check_id(audio_id, 'audio_id')}.mp3"


@dataclass(frozen=True, slots=True)
class MixOutcome:
    """Where the mix is (relative to DATA_DIR), or why there is none."""

    relpath: Path | None
    problem: str | None = None


def candidate_urls(origin_urls: Iterable[str | None], source_url: str | None) -> list[str]:
    """Distinct usable URLs in the order to try them (the API sends "" for a missing originUrl)."""
    ordered = [url for url in (*origin_urls, source_url) if url]
    return list(dict.fromkeys(ordered))


async def _download(client: SunoClient, url: str, final: Path, max_bytes: int) -> None:
    # A unique temp name: two batches fetching the same mix never write into one file, and the
    # second rename replaces a complete file with an identical one.
    part = temp_path_for(final)
    try:
        await client.download(url, part, max_bytes=max_bytes, fsync=False)
        await asyncio.to_thread(check_opens, part)  # a header check; the one decode is the analysis pass
        await asyncio.to_thread(move_into_place, part, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


async def _generation_audio_url(client: SunoClient, task_id: str, audio_id: str) -> str | None:
    record = await client.generation_record(task_id)
    return next((audio.audio_url for audio in record.audios if audio.id == audio_id and audio.audio_url), None)


async def ensure_mix(
    client: SunoClient | None,
    data_dir: Path,
    audio_id: str,
    urls: list[str],
    *,
    task_id: str | None,
    max_bytes: int,
) -> MixOutcome:
    """The song's mix on disk: reused if present, else downloaded from the first URL that works."""
    relpath = mix_relpath(audio_id)
    final = data_dir / relpath
    if final.is_file():
        return MixOutcome(relpath)
    if client is None:
        return MixOutcome(None, "the mix is not on disk and fetching mixes is off")
    final.parent.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    tried_record = False
    pending = list(urls)
    while True:
        if not pending and not tried_record and task_id:
            tried_record = True
            try:
                found = await _generation_audio_url(client, task_id, audio_id)
            except SunoError as error:
                problems.append(f"generation record: {error}")
                found = None
            if found and found not in urls:
                pending.append(found)
        if not pending:
            break
        url = pending.pop(0)
        try:
            await _download(client, url, final, max_bytes)
        except (SunoError, UndecodableAudio) as error:
            problems.append(str(error))
            continue
        return MixOutcome(relpath)
    reason = "; ".join(problems) if problems else "no URL for the mix (no originUrl, audioUrl or generation record)"
    log.warning("no mix for %s: %s", audio_id, reason)
    return MixOutcome(None, f"mix not fetched: {reason}")
