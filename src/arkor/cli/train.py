"""``arkor train``: upload a dataset, start a LoRA job and follow it with a progress bar."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from arkor.cli.jobs import Json, Org, Project
from arkor.cli.output import cloud_errors, console, err_console, fail, print_json
from arkor.cli.runs import (
    GoodOnly,
    KeyId,
    Mark,
    Search,
    Since,
    Until,
    export_to,
    run_filters,
    skipped_note,
)
from arkor.cli.session import CloudSession, open_session, resolve_scope
from arkor.contract.job_config import field_help, wire_name
from arkor.sdk import (
    DEFAULT_MODEL,
    CheckpointInfo,
    LogInfo,
    ProjectScope,
    RunFilters,
    StartedInfo,
    TrainingJob,
    create_trainer,
)

DEMO_NAME = "support-triage"


def demo_defaults() -> tuple[Path, dict[str, Any]]:
    from arkor.training.demo import DEMO_CONFIG, demo_dataset_path

    options = {k: v for k, v in DEMO_CONFIG.items() if k not in ("model", "datasetSource")}
    return demo_dataset_path(), options


class LiveProgress:
    """The Trainer callbacks that drive a Rich progress bar over the job's steps."""

    def __init__(self, max_steps: int | None) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console)
        self.task = self.progress.add_task("queued", total=max_steps)
        self.loss: float | None = None
        self.eval_loss: float | None = None

    def on_started(self, info: StartedInfo) -> None:
        total = info.metadata.get("totalSteps")
        if isinstance(total, int):
            self.progress.update(self.task, total=total)
        self.progress.update(self.task, description="training")

    def on_log(self, info: LogInfo) -> None:
        self.loss = info.loss if info.loss is not None else self.loss
        self.eval_loss = info.eval_loss if info.eval_loss is not None else self.eval_loss
        text = "loss " + (f"{self.loss:.4f}" if self.loss is not None else "-")
        if self.eval_loss is not None:
            text += f"  eval {self.eval_loss:.4f}"
        self.progress.update(self.task, completed=info.step, description=text)

    def on_checkpoint(self, info: CheckpointInfo) -> None:
        self.progress.console.print(f"Saved checkpoint at step {info.step}")


def endpoint_dataset(session: CloudSession, scope: ProjectScope, endpoint: str,
                     filters: RunFilters, out: Path | None, scratch: ExitStack, *,
                     quiet: bool) -> Path:
    """The endpoint's runs exported to ``out`` (or a temporary file, gone when ``scratch``
    closes), refused when not one run could become a training line."""
    deployment, exported = export_to(session, scope, endpoint, filters)
    if not exported.exported:
        fail(f"Nothing to train on: no run of {deployment.slug} matches and is a completed "
             f"plain-chat call ({skipped_note(exported)}). Call the endpoint first, or "
             f"widen the filters (`arkor endpoints runs list {deployment.slug}`).")
    if out is None:
        out = Path(scratch.enter_context(TemporaryDirectory())) / f"{deployment.slug}.jsonl"
    try:
        out.write_text(exported.jsonl, encoding="utf-8")
    except OSError as exc:
        fail(f"Cannot write {out}: {exc.strerror or exc}")
    (err_console if quiet else console).print(
        f"Exported {exported.exported} run{'' if exported.exported == 1 else 's'} of "
        f"{deployment.slug}; {skipped_note(exported)}.", markup=False)
    return out


def summarize(job: TrainingJob) -> None:
    steps = ", ".join(str(c.step) for c in job.checkpoints) or "none"
    console.print(f"Job [bold]{job.id}[/bold] finished with status={job.status}")
    console.print(f"Checkpoints: {steps}")
    if job.status == "completed":
        console.print(f"Deploy it: arkor endpoints create SLUG --final {job.id}")
    elif job.error:
        fail(f"Job {job.status}: {job.error}")
    else:
        fail(f"Job {job.status}.")


def train(
    dataset: Annotated[Path | None, typer.Option(
        "--dataset", metavar="FILE", help="Chat-format JSONL: {\"messages\": [...]} per line.",
        exists=True, dir_okay=False)] = None,
    demo: Annotated[bool, typer.Option(
        "--demo", help="Use the packaged support-triage dataset and its settings.")] = False,
    from_endpoint: Annotated[str | None, typer.Option(
        "--from-endpoint", metavar="SLUG",
        help="Train on a deployment's stored runs (its slug or id), exported as "
             "`arkor endpoints runs export` does.")] = None,
    good_only: GoodOnly = False,
    key_id: KeyId = None,
    since: Since = None,
    until: Until = None,
    search: Search = None,
    mark: Mark = None,
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="FILE", dir_okay=False,
        help="With --from-endpoint: keep the exported JSONL at FILE (default: a temporary "
             "file).")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Job name (default: the file name, the endpoint's slug, or "
                       "support-triage).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help=f"Base model (default: {DEFAULT_MODEL}).")] = None,
    max_steps: Annotated[int | None, typer.Option(
        "--max-steps", help=field_help("maxSteps"))] = None,
    lora_r: Annotated[int | None, typer.Option("--lora-r", help=field_help("loraR"))] = None,
    learning_rate: Annotated[float | None, typer.Option(
        "--learning-rate", help=field_help("learningRate"))] = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", help=field_help("batchSize"))] = None,
    max_length: Annotated[int | None, typer.Option(
        "--max-length", help=field_help("maxLength"))] = None,
    save_steps: Annotated[int | None, typer.Option(
        "--save-steps", help=field_help("saveSteps"))] = None,
    eval_steps: Annotated[int | None, typer.Option(
        "--eval-steps", help=field_help("evalSteps"))] = None,
    gpu_types: Annotated[list[str] | None, typer.Option(
        "--gpu-type", metavar="TYPE",
        help="A GPU type the job may train on (repeat for several, e.g. --gpu-type A100 "
             "--gpu-type H100); the server refuses the job if it has none of them.")] = None,
    no_wait: Annotated[bool, typer.Option(
        "--no-wait", help="Start the job and return; follow it with `arkor jobs events`.")
    ] = False,
    org: Org = None,
    project: Project = None,
    as_json: Json = False,
) -> None:
    """Fine-tune a LoRA adapter: upload the dataset, start a job and follow it.

    The dataset is checked first; its problems are listed by line number.

    With --from-endpoint, the dataset is a deployment's traffic: its completed plain-chat
    runs (filtered by --good-only, --key, --since, --until, --search, --mark), one line each.

    Ctrl-C stops following; the job keeps running until `arkor jobs cancel JOB`.

    \b
    Examples:
      arkor train --demo
      arkor train --dataset tickets.jsonl --max-steps 60 --save-steps 20
      arkor train --dataset tickets.jsonl --no-wait --json
      arkor train --from-endpoint support-bot --good-only --max-steps 60
    """
    if sum((dataset is not None, demo, from_endpoint is not None)) != 1:
        fail("Pass one of --dataset FILE (chat-format JSONL), --demo, or --from-endpoint SLUG.")
    filters = run_filters(key_id=key_id, since=since, until=until, search=search, mark=mark,
                          good_only=good_only)
    if from_endpoint is None and (filters != RunFilters() or out is not None):
        fail("--good-only, --key, --since, --until, --search, --mark and --out go with "
             "--from-endpoint SLUG.")
    options: dict[str, Any] = {}
    if demo:
        dataset, options = demo_defaults()
    flags = {"max_steps": max_steps, "lora_r": lora_r, "learning_rate": learning_rate,
             "batch_size": batch_size, "max_length": max_length, "save_steps": save_steps,
             "eval_steps": eval_steps}
    options.update({wire_name(k): v for k, v in flags.items() if v is not None})
    if gpu_types:
        options[wire_name("gpu_types")] = list(gpu_types)
    with cloud_errors(), ExitStack() as scratch:
        session = open_session(bootstrap=True)
        scope = resolve_scope(session, org, project, bootstrap=True)
        if from_endpoint is not None:
            dataset = endpoint_dataset(session, scope, from_endpoint, filters, out, scratch,
                                       quiet=as_json)
        assert dataset is not None
        job_name = name or (DEMO_NAME if demo else dataset.stem)
        live = LiveProgress(options.get(wire_name("max_steps")))
        quiet = as_json
        trainer = create_trainer(name=job_name, dataset=dataset, model=model or DEFAULT_MODEL,
                                 extra_config=options, client=session.client,
                                 credentials=session.credentials, scope=scope,
                                 on_started=None if quiet else live.on_started,
                                 on_log=None if quiet else live.on_log,
                                 on_checkpoint=None if quiet else live.on_checkpoint)
        job_id = trainer.start()
        if no_wait:
            job = session.client.get_job(job_id, scope)
            if as_json:
                print_json(job)
            else:
                console.print(f"Started job [bold]{job_id}[/bold] ({job_name}).")
                console.print(f"Follow it: arkor jobs events {job_id}")
            return
        if not as_json:
            console.print(f"Started job [bold]{job_id}[/bold] ({job_name}).")
        try:
            if as_json:
                job = trainer.wait().job
            else:
                with live.progress:
                    job = trainer.wait().job
        except KeyboardInterrupt:
            err_console.print(f"Stopped following job {job_id}; it keeps running. "
                              f"Cancel it with `arkor jobs cancel {job_id}`.")
            raise typer.Exit(130) from None
    if as_json:
        print_json(job)
        if job.status != "completed":
            raise typer.Exit(1)
        return
    summarize(job)
