"""PEFT LoRA training of a causal LM on chat data: a plain torch loop, no ``Trainer``.

The loop is small enough to read in one sitting and gives the runner what it needs that
``transformers.Trainer`` makes awkward: events in the contract's exact shape, checkpoints
written atomically, and a step that a cancel can interrupt.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from arkor import heap
from arkor.contract.artifacts import checkpoint_dir, final_dir
from arkor.contract.job_config import (
    DRY_RUN_MAX_EXAMPLES,
    TrainingConfig,
    plan_steps,
)
from arkor.training import checkpoints, events
from arkor.training.cancellation import CancelToken
from arkor.training.dataset import Conversation
from arkor.training.encoding import EncodedExample, collate, encode_conversation
from arkor.training.errors import DatasetError, DatasetProblem, JobConfigError

Emit = Callable[[events.Event], None]


def lr_multiplier(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    """Learning-rate factor for optimizer step ``s`` (0-based), as transformers computes it."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "cosine":
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
        return max(0.0, 1.0 - progress)

    return factor


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_base_model(base_model_dir: Path, device: torch.device) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    model.config.use_cache = False
    return model.to(device), tokenizer


def add_lora(model: Any, config: TrainingConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    targets = config.target_modules
    if targets != "all-linear":
        names = [name for name, _ in model.named_modules()]
        missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
        if missing:
            linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                             if isinstance(m, torch.nn.Linear)})
            raise JobConfigError("targetModules", f"names modules the base model does not have: "
                                                  f"{', '.join(missing)} (its linear layers: "
                                                  f"{', '.join(linear)})")
    # peft annotates lora_alpha as int; it is a scale and takes any positive number.
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,  # type: ignore[arg-type]
                      lora_dropout=config.lora_dropout, task_type="CAUSAL_LM",
                      target_modules=targets if isinstance(targets, str) else list(targets))
    torch.manual_seed(config.seed)
    with warnings.catch_warnings():
        # peft 0.21 still reads the alias that transformers 5 deprecated; nothing to act on.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                                category=FutureWarning)
        return get_peft_model(model, lora)


def encode_all(tokenizer: Any, rows: list[Conversation], config: TrainingConfig
               ) -> tuple[list[EncodedExample], int]:
    """Encoded examples and how many were dropped (nothing trainable left after truncation)."""
    encoded = [encode_conversation(tokenizer, row, max_length=config.max_length,
                                   responses_only=config.train_on_responses_only)
               for row in rows]
    kept = [e for e in encoded if e is not None]
    return kept, len(encoded) - len(kept)


@dataclass
class _Window:
    """Losses and samples since the last ``training.log`` row."""

    start: float
    losses: list[float] = field(default_factory=list)
    samples: int = 0

    def add(self, loss: float, samples: int) -> None:
        self.losses.append(loss)
        self.samples += samples

    def reset(self, now: float) -> None:
        self.start, self.losses, self.samples = now, [], 0


class LoraRun:
    """One training job: set up with :meth:`prepare`, then :meth:`train` emits every event
    after ``training.started`` up to ``training.completed``."""

    def __init__(self, config: TrainingConfig, *, job_id: str, base_model_dir: Path,
                 base_model_name: str, output_dir: Path, emit: Emit,
                 cancel: CancelToken | None = None) -> None:
        self.config = config
        self.job_id = job_id
        self.base_model_dir = base_model_dir
        self.base_model_name = base_model_name
        self.output_dir = output_dir
        self.emit = emit
        self.cancel = cancel or CancelToken()
        self.step = 0
        self.device = pick_device()

    def prepare(self, train_rows: list[Conversation], eval_rows: list[Conversation]
                ) -> dict[str, Any]:
        """Load the model, add LoRA, tokenize; return the ``training.started`` metadata."""
        config = self.config
        if config.dry_run:
            train_rows = train_rows[:DRY_RUN_MAX_EXAMPLES]
            eval_rows = eval_rows[:DRY_RUN_MAX_EXAMPLES]
        base, self.tokenizer = load_base_model(self.base_model_dir, self.device)
        self.cancel.raise_if_requested()
        self.model = add_lora(base, config)
        self.train_set, dropped = encode_all(self.tokenizer, train_rows, config)
        self.eval_set, eval_dropped = encode_all(self.tokenizer, eval_rows, config)
        if not self.train_set:
            raise DatasetError([DatasetProblem(None, f"no example has an assistant token "
                                                     f"within maxLength={config.max_length}; "
                                                     "raise maxLength")])
        self.plan = plan_steps(config, len(self.train_set))
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        return {
            "baseModel": self.base_model_name,
            "device": self.device.type,
            "dtype": "float32",
            "trainableParams": trainable,
            "totalParams": total,
            "numExamples": len(self.train_set),
            "numEvalExamples": len(self.eval_set),
            "droppedExamples": dropped + eval_dropped,
            "totalSteps": self.plan.total_steps,
            "stepsPerEpoch": self.plan.steps_per_epoch,
            "config": config.to_wire(),
        }

    def _batches(self) -> Any:
        rng = random.Random(self.config.seed)
        while True:
            order = list(range(len(self.train_set)))
            rng.shuffle(order)
            for start in range(0, len(order), self.config.batch_size):
                yield [self.train_set[i] for i in order[start:start + self.config.batch_size]]

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in batch.items()}

    def evaluate(self) -> float:
        self.model.eval()
        total_loss, total_tokens = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(self.eval_set), self.config.batch_size):
                with self.cancel.interruptible():
                    chunk = self.eval_set[start:start + self.config.batch_size]
                    batch = self._to_device(collate(chunk, self.tokenizer.pad_token_id))
                    tokens = int((batch["labels"][:, 1:] != -100).sum())
                    total_loss += float(self.model(**batch).loss) * tokens
                    total_tokens += tokens
        self.model.train()
        return total_loss / max(1, total_tokens)

    def _report(self, step: int, window: _Window, learning_rate: float) -> float | None:
        """Eval, ``training.log`` and ``checkpoint.saved`` due after ``step``; the eval loss."""
        config = self.config
        last = step == self.plan.total_steps
        do_eval = bool(self.eval_set) and config.eval_steps is not None and (
            step % config.eval_steps == 0 or last)
        eval_loss = self.evaluate() if do_eval else None
        epoch = step / self.plan.steps_per_epoch
        if step % config.logging_steps == 0 or last:
            now = time.perf_counter()
            self.emit(events.log(self.job_id, step=step, loss=statistics.fmean(window.losses),
                                 eval_loss=eval_loss, learning_rate=learning_rate, epoch=epoch,
                                 samples_per_second=window.samples / (now - window.start)))
            window.reset(now)
        elif do_eval:
            self.emit(events.log(self.job_id, step=step, loss=None, eval_loss=eval_loss,
                                 learning_rate=learning_rate, epoch=epoch,
                                 samples_per_second=None))
        if config.save_steps and step % config.save_steps == 0:
            artifacts = checkpoints.save_adapter(
                self.model, checkpoint_dir(self.output_dir, step),
                output_dir=self.output_dir, base_model_name=self.base_model_name)
            self.emit(events.checkpoint(self.job_id, step=step, artifacts=artifacts))
        return eval_loss

    def train(self) -> dict[str, Any]:
        """Run every step; return the ``training.completed`` metrics (the event is emitted)."""
        config, plan = self.config, self.plan
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate,
                                      weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_multiplier(config.lr_scheduler_type, config.warmup_steps,
                                     plan.total_steps))
        torch.manual_seed(config.seed)
        self.model.train()
        batches = self._batches()
        started = time.perf_counter()
        window = _Window(started)
        losses: list[float] = []
        tokens_seen = samples_seen = 0
        compute_seconds = 0.0
        eval_loss: float | None = None
        for step in range(1, plan.total_steps + 1):
            rows = next(batches)
            batch = self._to_device(collate(rows, self.tokenizer.pad_token_id))
            learning_rate = float(scheduler.get_last_lr()[0])
            step_start = time.perf_counter()
            with self.cancel.interruptible():
                loss = self.model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            compute_seconds += time.perf_counter() - step_start
            self.step = step
            losses.append(float(loss.detach()))
            window.add(losses[-1], len(rows))
            samples_seen += len(rows)
            tokens_seen += int(batch["attention_mask"].sum())
            reported = self._report(step, window, learning_rate)
            eval_loss = eval_loss if reported is None else reported
            print(f"step {step}/{plan.total_steps} loss={losses[-1]:.4f}", file=sys.stderr)
        runtime = time.perf_counter() - started
        self.cancel.raise_if_requested()
        artifacts = checkpoints.save_adapter(self.model, final_dir(self.output_dir),
                                             output_dir=self.output_dir,
                                             base_model_name=self.base_model_name)
        details = {
            "steps": plan.total_steps,
            "epoch": round(plan.total_steps / plan.steps_per_epoch, 4),
            "trainLoss": _finite(statistics.fmean(losses), 6),
            "evalLoss": None if eval_loss is None else _finite(eval_loss, 6),
            "trainRuntimeSeconds": round(runtime, 3),
            "secondsPerStep": round(compute_seconds / plan.total_steps, 4),
            "samplesPerSecond": round(samples_seen / compute_seconds, 4),
            "tokensPerSecond": round(tokens_seen / compute_seconds, 2),
            "trainTokens": tokens_seen,
            "peakRssMb": round(heap.peak_rss_mib(), 1),
        }
        event = events.completed(self.job_id, final_loss=losses[-1],
                                 total_steps=plan.total_steps,
                                 total_time=time.perf_counter() - started, artifacts=artifacts,
                                 details=details)
        self.emit(event)
        metrics: dict[str, Any] = event["metrics"]
        return metrics


def _finite(value: float, digits: int) -> float | None:
    """``value`` rounded, or ``None`` for a NaN or infinite loss (JSON has no NaN)."""
    return round(value, digits) if math.isfinite(value) else None
