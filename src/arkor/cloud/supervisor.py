"""Runs training jobs out of process, one at a time by default, and records what they say.

The dispatcher thread starts queued jobs (oldest first) up to ``max_concurrent``; each job
runs ``python -m arkor.training.runner SPEC.json`` in its own process group. A reader thread
stores every JSON-line event, registers checkpoints and the final adapter, and moves the job
through its statuses. A crash, OOM kill or bad exit of the runner fails the job with a
reason; the server itself is never affected. Cancel sends SIGTERM, then SIGKILL after a
grace period; a job ended by anyone else (a cancel that went to another server) has its
runner stopped at the runner's next event.

Each supervisor has an id and beats (``supervisors.seen_at``, every ``BEAT_SECONDS``); a job
it starts names it. Several servers may share one PostgreSQL database: a job is an orphan,
and is failed, only once the supervisor that started it has not beaten for
``ORPHAN_SECONDS`` (it crashed, or its machine went away), checked at start and at every beat.
On SQLite (one process at a time) every job left ``running`` by another supervisor is an
orphan at start. A server that stops cleanly fails its own running jobs itself.

Every ``training.failed`` the supervisor writes itself carries ``step``: the runner's last
step when it said one, else the last step stored for the job, else null.

Quotas (:mod:`arkor.cloud.quotas`): an org never has more than ``quota_running_jobs`` jobs
running (its others wait while other orgs' jobs start), and a runner still going
``quota_job_wall_s`` after it started is stopped as a cancel is, and its job fails with that
reason.

The runner gets an allow-listed environment (:func:`~arkor.training.spec.runner_environment`),
never the server's secrets; its spec, log and artifacts are private (0600 files, 0700
directories).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arkor.cloud.files import open_private, private_dir
from arkor.cloud.settings import Settings
from arkor.contract.artifacts import checkpoint_dir
from arkor.contract.events import CHECKPOINT, COMPLETED, FAILED, RUNNER_TERMINAL
from arkor.store import datasets, jobs
from arkor.store.db import Database
from arkor.store.tables import Job
from arkor.training import events
from arkor.training.spec import (
    RunSpec,
    exit_reason,
    runner_command,
    runner_environment,
    write_spec,
)

log = logging.getLogger("arkor.training")

CANCEL_GRACE_SECONDS = 5.0
BEAT_SECONDS = 10.0
ORPHAN_SECONDS = 60.0  # six missed beats
RESTART_MESSAGE = "the server stopped while this job was running; start the job again"


def wall_time_message(seconds: int) -> str:
    return (f"the job ran past its wall time of {seconds} s (quota ARKOR_QUOTA_JOB_WALL_S="
            f"{seconds}) and was stopped; checkpoints saved before then are kept")


@dataclass
class _Running:
    job_id: str
    process: subprocess.Popen[str]
    cancelled: threading.Event = field(default_factory=threading.Event)
    over_wall_time: threading.Event = field(default_factory=threading.Event)
    follower: threading.Thread | None = None
    wall_timer: threading.Timer | None = None


def _runner_step(terminal: dict[str, Any] | None) -> int | None:
    """The step the runner's last event reported, if it reported one."""
    step = terminal.get("step") if terminal is not None else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


class JobSupervisor:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.id = uuid.uuid4().hex
        self.beat_seconds = BEAT_SECONDS
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._dispatcher: threading.Thread | None = None

    # lifecycle

    def start(self) -> None:
        self._beat()
        self._fail_orphans()
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="arkor-jobs",
                                            daemon=True)
        self._dispatcher.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        with self._lock:
            running = list(self._running.values())
        for run in running:
            self._signal(run, signal.SIGTERM)
        for run in running:
            try:
                run.process.wait(timeout=CANCEL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self._signal(run, signal.SIGKILL)
        for run in running:
            if run.follower is not None:
                run.follower.join(timeout=5)
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=5)
        with self.db.session() as session:
            jobs.forget_supervisor(session, self.id)

    def submit(self) -> None:
        """A job was queued: look for work now rather than at the next poll."""
        self._wake.set()

    def cancel(self, job_id: str) -> None:
        """Stop a running job's process (the route has already marked it cancelled)."""
        with self._lock:
            run = self._running.get(job_id)
        if run is not None:
            self._stop(run)

    def runner_pid(self, job_id: str) -> int | None:
        with self._lock:
            run = self._running.get(job_id)
        return run.process.pid if run else None

    # internals

    def _beat(self) -> None:
        with self.db.session() as session:
            jobs.beat(session, self.id)

    def _fail_orphans(self) -> None:
        alive_within = ORPHAN_SECONDS if self.db.is_postgres else None
        with self.db.session() as session:
            orphans = jobs.orphaned_jobs(session, self.id, others_alive_within=alive_within)
        for job_id in orphans:
            log.warning("job %s was left running by a server that is gone; failing it", job_id)
            self._finish(job_id, "failed", events.failed(job_id, error=RESTART_MESSAGE))

    def _dispatch_loop(self) -> None:
        next_beat = time.monotonic() + self.beat_seconds
        while not self._stopping.is_set():
            try:
                self._start_queued()
            except Exception:
                log.exception("could not start queued jobs")
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.beat_seconds
                try:
                    self._beat()
                    if self.db.is_postgres:
                        self._fail_orphans()  # another server's, once it stopped beating
                except Exception:
                    log.exception("could not beat or look for orphaned jobs")
            self._wake.wait(timeout=1.0)
            self._wake.clear()

    def _start_queued(self) -> None:
        with self._lock:
            free = self.settings.max_concurrent_jobs - len(self._running)
        if free <= 0:
            return
        per_org = self.settings.quota_running_jobs
        with self.db.session() as session:
            running = Counter(j.org_id for j in jobs.jobs_with_status(session, ("running",)))
            chosen: list[str] = []
            for job in jobs.jobs_with_status(session, ("queued",)):
                if len(chosen) == free:
                    break
                if per_org and running[job.org_id] >= per_org:
                    continue  # this org's jobs wait; another org's may start
                running[job.org_id] += 1
                chosen.append(job.id)
        for job_id in chosen:
            self._launch(job_id)

    def _launch(self, job_id: str) -> None:
        try:
            spec = self._spec(job_id)
        except jobs.JobMoved:
            return  # cancelled while this read it, or another server's dispatcher took it
        except Exception as exc:
            log.exception("job %s could not be prepared", job_id)
            self._finish(job_id, "failed", events.failed(job_id, error=f"could not start: {exc}"))
            return
        if spec is None:
            return
        spec_path = write_spec(spec, spec.output_dir / "spec.json")
        stderr = open_private(spec.output_dir / "runner.log", "ab")
        process = subprocess.Popen(
            runner_command(spec_path), stdout=subprocess.PIPE, stderr=stderr, text=True,
            start_new_session=True, env=runner_environment(os.environ),
        )
        stderr.close()
        run = _Running(job_id=job_id, process=process)
        run.follower = threading.Thread(target=self._follow, args=(run, spec),
                                        name=f"arkor-job-{job_id[:8]}", daemon=True)
        if wall := self.settings.quota_job_wall_s:
            run.wall_timer = threading.Timer(wall, self._stop_over_wall_time, args=(run,))
            run.wall_timer.daemon = True
        with self._lock:
            self._running[job_id] = run
        run.follower.start()
        if run.wall_timer is not None:
            run.wall_timer.start()
        if not self._is_running(job_id):
            # Cancelled after it was marked running and before it was registered above: that
            # cancel found no process to stop. (A cancel after the registration finds it.)
            self._stop(run)

    def _stop_over_wall_time(self, run: _Running) -> None:
        if run.process.poll() is not None:
            return
        log.info("job %s ran past its wall time of %d s; stopping it", run.job_id,
                 self.settings.quota_job_wall_s)
        run.over_wall_time.set()
        self._signal(run, signal.SIGTERM)
        timer = threading.Timer(CANCEL_GRACE_SECONDS, self._kill_if_alive, args=(run,))
        timer.daemon = True
        timer.start()

    def _spec(self, job_id: str) -> RunSpec | None:
        """Mark a queued job running and say how to run it; None if it is no longer queued."""
        from arkor.cloud.dataset_roots import dataset_path_check
        from arkor.contract.job_config import parse_job_config
        from arkor.engine.embedded import ensure_embedded_model
        from arkor.training.dataset import dataset_location

        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job is None or job.status != "queued":
                return None
            config = parse_job_config(job.config)
            spec_model = self.settings.registry.get(config.model)
            if spec_model is None:
                raise ValueError(f"base model {config.model!r} is not registered")

            def resolve_upload(upload_id: str) -> Path:
                found = datasets.get_dataset(session, job.project_id, upload_id)
                if found is None:
                    raise ValueError(f"uploaded dataset {upload_id!r} no longer exists")
                return Path(found.path)

            check_path = dataset_path_check(self.settings)
            data_path, _ = dataset_location(config.dataset_source, resolve_upload=resolve_upload,
                                            check_path=check_path)
            eval_path = None
            if config.eval_dataset_source is not None:
                eval_path, _ = dataset_location(config.eval_dataset_source,
                                                resolve_upload=resolve_upload,
                                                check_path=check_path)
            output_dir = private_dir(self.settings.artifacts_dir / job.id)
            job.artifacts_dir = str(output_dir)
            job.supervisor_id = self.id
            jobs.set_status(session, job, "running")
            job_config = dict(job.config)
        base_dir = spec_model.path or ensure_embedded_model(self.settings.models_dir)
        return RunSpec(job_id=job_id, base_model_dir=base_dir, dataset_path=data_path,
                       output_dir=output_dir, config=job_config, base_model_name=spec_model.name,
                       eval_dataset_path=eval_path)

    def _follow(self, run: _Running, spec: RunSpec) -> None:
        terminal: dict[str, Any] | None = None
        assert run.process.stdout is not None
        try:
            for line in run.process.stdout:
                event = events.parse_event_line(line)
                if event is None:
                    continue
                if event["type"] in RUNNER_TERMINAL:
                    terminal = event
                    break
                self._record(run, spec, event)
            run.process.stdout.close()
            returncode = run.process.wait()
        except Exception:
            log.exception("lost track of job %s", run.job_id)
            returncode = run.process.poll() or 1
        finally:
            if run.wall_timer is not None:
                run.wall_timer.cancel()
            with self._lock:
                self._running.pop(run.job_id, None)
        if run.cancelled.is_set():
            self._wake.set()
            return
        completed = terminal is not None and terminal["type"] == COMPLETED and returncode == 0
        step = _runner_step(terminal)
        if run.over_wall_time.is_set() and not completed:
            self._finish(run.job_id, "failed", events.failed(
                run.job_id, error=wall_time_message(self.settings.quota_job_wall_s), step=step))
            self._wake.set()
            return
        if self._stopping.is_set() and (terminal is None or terminal["type"] != COMPLETED):
            self._finish(run.job_id, "failed",
                         events.failed(run.job_id, error=RESTART_MESSAGE, step=step))
            return
        if completed:
            assert terminal is not None
            self._finish(run.job_id, "completed", terminal)
        else:
            if terminal is None or terminal["type"] != FAILED:
                reason = exit_reason(returncode) or "the training process ended without a result"
                terminal = events.failed(run.job_id, error=reason)
            self._finish(run.job_id, "failed", terminal)
        self._wake.set()

    def _record(self, run: _Running, spec: RunSpec, event: dict[str, Any]) -> None:
        with self.db.session() as session:
            job = session.get(Job, run.job_id)
            if job is None or job.status != "running":
                # Ended by someone else: a cancel that went to another server, or a server
                # that took this one for dead. Its runner has nothing more to say.
                self._stop(run)
                return
            if event["type"] == CHECKPOINT and isinstance(event.get("step"), int):
                step = event["step"]
                if jobs.get_checkpoint(session, job.id, step) is None:
                    jobs.add_checkpoint(session, job_id=job.id, step=step,
                                        path=str(checkpoint_dir(spec.output_dir, step)))
            jobs.add_event(session, job.id, event)

    def _finish(self, job_id: str, status: str, event: dict[str, Any]) -> None:
        if isinstance(event.get("error"), str):
            # Errors are shown to API callers: no server paths in them.
            event = {**event, "error": event["error"].replace(str(self.settings.data_dir),
                                                              "<data dir>")}
        try:
            with self.db.session() as session:
                job = session.get(Job, job_id)
                if job is None or job.status in jobs.TERMINAL_STATUSES:
                    return
                if event["type"] == FAILED and event.get("step") is None:
                    event = {**event, "step": jobs.last_step(session, job_id)}
                jobs.set_status(session, job, status,
                                error=event.get("error") if status == "failed" else None)
                jobs.add_event(session, job_id, event)
        except jobs.JobMoved:
            return  # a cancel ended it while this read it: the cancel stands

    def _is_running(self, job_id: str) -> bool:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            return job is not None and job.status == "running"

    def _stop(self, run: _Running) -> None:
        """SIGTERM the runner's group, SIGKILL after the grace period; once per run."""
        with self._lock:
            if run.cancelled.is_set():
                return
            run.cancelled.set()
        self._signal(run, signal.SIGTERM)
        timer = threading.Timer(CANCEL_GRACE_SECONDS, self._kill_if_alive, args=(run,))
        timer.daemon = True
        timer.start()

    def _signal(self, run: _Running, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.process.pid, sig)

    def _kill_if_alive(self, run: _Running) -> None:
        if run.process.poll() is None:
            self._signal(run, signal.SIGKILL)
