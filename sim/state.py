"""The simulator's domain state: music tasks, separation tasks, the balance and the charge ledger.

Thread-safe (HTTP handlers run on the server's event loop, test code calls in from other
threads); nothing here does I/O. Times are sim seconds from `SimClock.now()`.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import threading
import uuid
from dataclasses import dataclass
from typing import Final, Literal

from stemcat.sim.clock import SimClock
from stemcat.sim.config import SimConfig
from stemcat.sim.models import Charge
from stemcat.sim.stems import CREDIT_COST, SeparationType
from stemcat.sim.synth import stable_int
from stemcat.sim.tracks import MusicAudio, MusicTask, make_music_task

SuccessFlag = Literal["PENDING", "SUCCESS", "CREATE_TASK_FAILED", "GENERATE_AUDIO_FAILED", "CALLBACK_EXCEPTION"]
CallbackStatus = Literal["pending", "delivering", "delivered", "failed"]

FAILURE_MESSAGES: Final[dict[int, str]] = {
    451: "Download Failed - Unable to download source audio file",
    500: "separation failed, please try again later",
}


@dataclass(frozen=True)
class TaskFailure:
    """How a task ends when it does not succeed."""

    flag: Literal["CREATE_TASK_FAILED", "GENERATE_AUDIO_FAILED"]
    code: int
    message: str


@dataclass
class SeparationTask:
    """One accepted (and charged) separation submit."""

    task_id: str
    music_task_id: str
    audio_id: str
    music_index: int
    type: SeparationType
    callback_url: str
    api_key_hash: str
    created_s: float
    complete_s: float
    failure: TaskFailure | None
    callback_status: CallbackStatus = "pending"
    callback_attempts: int = 0
    callbacks_delivered: int = 0

    def is_complete(self, now_s: float) -> bool:
        return now_s >= self.complete_s

    def success_flag(self, now_s: float) -> SuccessFlag:
        if not self.is_complete(now_s):
            return "PENDING"
        if self.failure is not None:
            return self.failure.flag
        if self.callback_status == "failed":
            return "CALLBACK_EXCEPTION"
        return "SUCCESS"

    def has_files(self, now_s: float) -> bool:
        """True once the task completed with stems (SUCCESS or CALLBACK_EXCEPTION)."""
        return self.is_complete(now_s) and self.failure is None


@dataclass(frozen=True)
class SubmitRequest:
    """A validated-in-shape generate body plus who sent it."""

    music_task_id: str
    audio_id: str
    type: SeparationType
    callback_url: str
    api_key_hash: str


@dataclass(frozen=True)
class SubmitOutcome:
    """Either the created task or the documented error code the submit must get."""

    task: SeparationTask | None
    error_code: int | None = None
    error_msg: str | None = None


class SimState:
    """All mutable simulator state behind one lock."""

    def __init__(self, config: SimConfig, clock: SimClock) -> None:
        self._config = config
        self._clock = clock
        self._lock = threading.RLock()
        self._music: dict[str, MusicTask] = {}
        self._audio_index: dict[str, tuple[MusicTask, MusicAudio]] = {}
        self._next_music_index = 0
        self._tasks: dict[str, SeparationTask] = {}
        self._completion_queue: list[tuple[float, str]] = []  # heap of (complete_s, task_id) not yet noticed
        self._balance = config.initial_credits
        self._ledger: list[Charge] = []
        self._task_rng = random.Random(stable_int(config.seed, "separation-tasks"))

    # -- music tasks -------------------------------------------------------------------
    def create_music_tasks(self, count: int) -> list[MusicTask]:
        """Create `count` new music tasks (each with two audio variations)."""
        created: list[MusicTask] = []
        with self._lock:
            for _ in range(count):
                task = make_music_task(self._config.seed, self._next_music_index, self._clock.epoch_ms())
                self._next_music_index += 1
                self._music[task.task_id] = task
                for audio in task.audios:
                    self._audio_index[audio.audio_id] = (task, audio)
                created.append(task)
        return created

    def music_task(self, task_id: str) -> MusicTask | None:
        with self._lock:
            return self._music.get(task_id)

    def audio(self, audio_id: str) -> tuple[MusicTask, MusicAudio] | None:
        with self._lock:
            return self._audio_index.get(audio_id)

    # -- separation tasks ----------------------------------------------------------------
    def submit(self, request: SubmitRequest, *, forced_failure_code: int | None = None) -> SubmitOutcome:
        """Accept and charge a separation submit, or say which documented code refuses it."""
        with self._lock:
            music = self._music.get(request.music_task_id)
            audio = next((a for a in music.audios if a.audio_id == request.audio_id), None) if music else None
            if music is None or audio is None:
                return SubmitOutcome(None, 400, "Invalid parameters: taskId/audioId not found")
            cost = CREDIT_COST[request.type]
            if self._balance < cost:
                return SubmitOutcome(None, 429, "Insufficient credits")
            now = self._clock.now()
            low, high = self._config.processing_s
            task = SeparationTask(
                task_id=uuid.uuid4().hex,
                music_task_id=music.task_id,
                audio_id=audio.audio_id,
                music_index=audio.music_index,
                type=request.type,
                callback_url=request.callback_url,
                api_key_hash=request.api_key_hash,
                created_s=now,
                complete_s=now + self._task_rng.uniform(low, high),
                failure=self._draw_failure(forced_failure_code),
            )
            self._balance -= cost
            self._tasks[task.task_id] = task
            heapq.heappush(self._completion_queue, (task.complete_s, task.task_id))
            self._ledger.append(
                Charge(
                    at=self._clock.epoch_ms(now),
                    api_key_hash=request.api_key_hash,
                    separation_task_id=task.task_id,
                    music_task_id=music.task_id,
                    audio_id=audio.audio_id,
                    type=request.type,
                    credits=cost,
                )
            )
            return SubmitOutcome(dataclasses.replace(task))

    def _draw_failure(self, forced_code: int | None) -> TaskFailure | None:
        draw = self._task_rng.random()
        if forced_code is None and draw >= self._config.failure_rate:
            return None
        code = forced_code if forced_code is not None else self._config.failure_error_code
        flag: Literal["CREATE_TASK_FAILED", "GENERATE_AUDIO_FAILED"] = (
            "CREATE_TASK_FAILED" if forced_code is None and self._task_rng.random() < 0.25 else "GENERATE_AUDIO_FAILED"
        )
        return TaskFailure(flag=flag, code=code, message=FAILURE_MESSAGES.get(code, "separation failed"))

    def task(self, task_id: str) -> SeparationTask | None:
        """A snapshot of one task."""
        with self._lock:
            task = self._tasks.get(task_id)
            return dataclasses.replace(task) if task else None

    def tasks(self) -> list[SeparationTask]:
        with self._lock:
            return [dataclasses.replace(t) for t in self._tasks.values()]

    def take_newly_completed(self, now_s: float) -> list[SeparationTask]:
        """Tasks that completed since the last call, marked so that each is returned once."""
        with self._lock:
            done: list[SeparationTask] = []
            while self._completion_queue and self._completion_queue[0][0] <= now_s:
                done.append(self._tasks[heapq.heappop(self._completion_queue)[1]])
            for task in done:
                task.callback_status = "delivering"
            return [dataclasses.replace(t) for t in done]

    def record_callback(self, task_id: str, *, attempts: int, delivered: int) -> None:
        """Store how the callback delivery of a task ended."""
        with self._lock:
            task = self._tasks[task_id]
            task.callback_attempts = attempts
            task.callbacks_delivered = delivered
            task.callback_status = "delivered" if delivered else "failed"

    # -- credits -------------------------------------------------------------------------
    def balance(self) -> int:
        with self._lock:
            return self._balance

    def set_balance(self, credits: int) -> None:
        with self._lock:
            self._balance = credits

    def ledger(self) -> list[Charge]:
        with self._lock:
            return list(self._ledger)
