"""Jobs, their checkpoints and their events: scoped by project, checkpoints in step order,
status times set once, and events read back in the order they were written, after any id."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from arkor.store import jobs
from arkor.store.db import Database
from arkor.store.tables import Job, Supervisor, utcnow
from tests.store.conftest import Tenant, new_tenant


def new_job(db: Database, tenant: Tenant, name: str = "run") -> Job:
    with db.session() as session:
        return jobs.create_job(session, org_id=tenant.org_id, project_id=tenant.project_id,
                               name=name, config={"model": "m"})


def test_a_job_is_found_only_in_its_own_project(db: Database, tenant: Tenant) -> None:
    job, stranger = new_job(db, tenant), new_tenant(db)
    with db.session() as session:
        assert jobs.get_job(session, tenant.project_id, job.id).config == {"model": "m"}
        assert jobs.get_job(session, stranger.project_id, job.id) is None
        assert jobs.list_jobs(session, stranger.project_id) == []


def test_jobs_are_listed_newest_first(db: Database, tenant: Tenant) -> None:
    names = ["first", "second", "third"]
    for name in names:
        new_job(db, tenant, name)
    with db.session() as session:
        assert [j.name for j in jobs.list_jobs(session, tenant.project_id)] == names[::-1]


def test_checkpoints_come_back_in_step_order_and_a_step_is_kept_once(
        db: Database, tenant: Tenant) -> None:
    job = new_job(db, tenant)
    with db.session() as session:
        for step in (20, 5, 10):
            jobs.add_checkpoint(session, job_id=job.id, step=step, path=f"/ckpt/{step}")
    with db.session() as session:
        assert [c.step for c in jobs.list_checkpoints(session, job.id)] == [5, 10, 20]
        assert jobs.get_checkpoint(session, job.id, 10).path == "/ckpt/10"
        assert jobs.get_checkpoint(session, job.id, 11) is None
    with pytest.raises(IntegrityError), db.session() as session:
        jobs.add_checkpoint(session, job_id=job.id, step=10, path="/elsewhere")


def test_status_times_are_set_once_and_errors_kept_on_the_terminal_status(
        db: Database, tenant: Tenant) -> None:
    job = new_job(db, tenant)
    with db.session() as session:
        row = jobs.get_job(session, tenant.project_id, job.id)
        jobs.set_status(session, row, "running")
        started = row.started_at
        jobs.set_status(session, row, "running")
        assert row.started_at == started is not None and row.completed_at is None
        jobs.set_status(session, row, "failed", error="out of memory")
    with db.session() as session:
        row = jobs.get_job(session, tenant.project_id, job.id)
        assert (row.status, row.error) == ("failed", "out of memory")
        assert row.completed_at is not None and row.completed_at >= row.started_at
        assert row.id in {j.id for j in jobs.jobs_with_status(session, jobs.TERMINAL_STATUSES)}
        assert row.id not in {j.id for j in jobs.jobs_with_status(session, ("running",))}


def test_two_writers_racing_for_a_status_cannot_both_win(db: Database, tenant: Tenant) -> None:
    """Regression: the cancel route and the dispatcher each read a queued job and wrote their
    status. The dispatcher's `running`, written after the cancel had committed, replaced
    `cancelled` (CI failed on test_cancel_a_queued_or_running_job[postgres]) and the job ran."""
    job = new_job(db, tenant)
    with pytest.raises(jobs.JobMoved), db.session() as dispatcher:
        starting = dispatcher.get(Job, job.id)
        assert starting.status == "queued"
        with db.session() as route:
            jobs.set_status(route, route.get(Job, job.id), "cancelled")
        jobs.set_status(dispatcher, starting, "running")
    with db.session() as session:
        row = session.get(Job, job.id)
        assert (row.status, row.started_at) == ("cancelled", None)
    # Any write of a job read before its status moved loses, not only a status write.
    with pytest.raises(StaleDataError), db.session() as late:
        stale = late.get(Job, job.id)
        with db.session() as other:
            jobs.set_status(other, other.get(Job, job.id), "failed", error="x")
        stale.artifacts_dir = "/elsewhere"
        late.flush()
    with db.session() as session:
        assert session.get(Job, job.id).artifacts_dir is None


def test_orphans_are_running_jobs_of_no_live_supervisor(db: Database, tenant: Tenant) -> None:
    me, alive, gone = "a" * 32, "b" * 32, "c" * 32
    with db.session() as session:
        jobs.beat(session, me)
        jobs.beat(session, alive)
        jobs.beat(session, gone)
        jobs.beat(session, gone)  # beats again: one row, a later time
    with db.session() as session:
        session.get(Supervisor, gone).seen_at = utcnow() - timedelta(seconds=120)
    made = {}
    for name, owner, status in [("mine", me, "running"), ("alive", alive, "running"),
                                ("gone", gone, "running"), ("nobody", None, "running"),
                                ("queued", None, "queued"), ("ended", gone, "failed")]:
        with db.session() as session:
            row = jobs.create_job(session, org_id=tenant.org_id, project_id=tenant.project_id,
                                  name=name, config={}, status=status)
            row.supervisor_id = owner
            made[row.id] = name

    def orphans(within: float | None) -> set[str]:
        with db.session() as session:
            found = jobs.orphaned_jobs(session, me, others_alive_within=within)
        return {made[job_id] for job_id in found if job_id in made}

    assert orphans(60) == {"gone", "nobody"}
    assert orphans(None) == {"alive", "gone", "nobody"}  # SQLite: no other process is alive
    with db.session() as session:
        jobs.forget_supervisor(session, alive)
    assert orphans(60) == {"alive", "gone", "nobody"}
    with db.session() as session:
        assert session.get(Supervisor, alive) is None
        assert session.get(Supervisor, me) is not None


def test_events_are_read_in_write_order_after_an_id_and_per_job(
        db: Database, tenant: Tenant) -> None:
    job, other = new_job(db, tenant), new_job(db, tenant, "other")
    written = []
    for step in range(6):
        with db.session() as session:
            jobs.add_event(session, other.id, {"type": "training.log", "step": -step})
            written.append(jobs.add_event(session, job.id,
                                          {"type": "training.log", "step": step}).id)
    assert written == sorted(written)
    with db.session() as session:
        events = jobs.events_after(session, job.id, 0)
        assert [e.payload["step"] for e in events] == list(range(6))
        assert [e.type for e in events] == ["training.log"] * 6
        later = jobs.events_after(session, job.id, written[2])
        assert [e.id for e in later] == written[3:]
        assert [e.id for e in jobs.events_after(session, job.id, written[2], limit=2)] == (
            written[3:5])
        assert jobs.events_after(session, job.id, written[-1]) == []


def test_last_step_is_the_latest_stored_log_or_checkpoint_step(
        db: Database, tenant: Tenant) -> None:
    job, other = new_job(db, tenant), new_job(db, tenant, "other")
    with db.session() as session:
        assert jobs.last_step(session, job.id) is None
        jobs.add_event(session, job.id, {"type": "training.started", "metadata": {}})
        assert jobs.last_step(session, job.id) is None
        jobs.add_event(session, job.id, {"type": "training.log", "step": 3})
        jobs.add_event(session, job.id, {"type": "checkpoint.saved", "step": 4})
        jobs.add_event(session, other.id, {"type": "training.log", "step": 9})
        jobs.add_event(session, job.id, {"type": "training.cancelled"})
    with db.session() as session:
        assert jobs.last_step(session, job.id) == 4
        assert jobs.last_step(session, other.id) == 9


def test_a_follower_never_ends_before_the_terminal_event(
        db: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the stream read a job's events, then its status; a job that finished in
    between (status and terminal event are one commit) looked ended with its last event
    unread, and the follower got `end` without `training.completed`."""
    import asyncio

    from arkor.cloud.routes import job_events

    job = new_job(db, tenant)
    with db.session() as session:
        jobs.set_status(session, session.get(Job, job.id), "running")
        jobs.add_event(session, job.id, {"type": "training.started"})
    real_events_after = jobs.events_after
    finished = False

    def events_then_finish(session, job_id, after, limit=500):  # type: ignore[no-untyped-def]
        nonlocal finished
        found = real_events_after(session, job_id, after, limit)
        if not found and not finished:  # the runner finishes right after this empty read
            finished = True
            with db.session() as other:
                jobs.set_status(other, other.get(Job, job_id), "completed")
                jobs.add_event(other, job_id, {"type": "training.completed"})
        return found

    monkeypatch.setattr(jobs, "events_after", events_then_finish)
    monkeypatch.setattr(job_events, "POLL_SECONDS", 0.01)

    class Connected:
        async def is_disconnected(self) -> bool:
            return False

    async def follow() -> list[bytes]:
        return [frame async for frame in job_events.event_stream(Connected(), db, job.id, 0)]

    frames = b"".join(asyncio.run(follow())).decode()
    assert frames.index("training.completed") < frames.index("event: end")
