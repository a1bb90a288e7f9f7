"""``arkor train``: upload a dataset, start a LoRA job and follow it with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from arkor.cli.jobs import Json, Org, Project
from arkor.cli.output import cloud_errors, console, err_console, fail, print_json
from arkor.cli.session import open_session, resolve_scope
from arkor.contract.job_config import field_help, wire_name
from arkor.sdk import (
    DEFAULT_MODEL,
    CheckpointInfo,
    LogInfo,
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
    name: Annotated[str | None, typer.Option(
        "--name", help="Job name (default: the file name, or support-triage).")] = None,
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

    Ctrl-C stops following; the job keeps running until `arkor jobs cancel JOB`.

    \b
    Examples:
      arkor train --demo
      arkor train --dataset tickets.jsonl --max-steps 60 --save-steps 20
      arkor train --dataset tickets.jsonl --no-wait --json
    """
    if (dataset is None) == (not demo):
        fail("Pass --dataset FILE (chat-format JSONL) or --demo.")
    options: dict[str, Any] = {}
    if demo:
        dataset, options = demo_defaults()
    flags = {"max_steps": max_steps, "lora_r": lora_r, "learning_rate": learning_rate,
             "batch_size": batch_size, "max_length": max_length, "save_steps": save_steps,
             "eval_steps": eval_steps}
    options.update({wire_name(k): v for k, v in flags.items() if v is not None})
    if gpu_types:
        options[wire_name("gpu_types")] = list(gpu_types)
    assert dataset is not None
    job_name = name or (DEMO_NAME if demo else dataset.stem)
    with cloud_errors():
        session = open_session(bootstrap=True)
        scope = resolve_scope(session, org, project, bootstrap=True)
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
