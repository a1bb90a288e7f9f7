"""Chat-format training data: JSONL files and ``datasets`` directories saved on disk.

Every row is checked before a job starts, and all problems are reported at once with their
line (or row) numbers, so a person can fix a file in one pass instead of one error per run.

A row is ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``:
an optional system message first, then a user message, and at least one assistant message.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arkor.contract.job_config import DatasetSource
from arkor.training.errors import DatasetError, DatasetProblem, JobConfigError

ROLES = ("system", "user", "assistant")
Message = dict[str, str]
Conversation = list[Message]
HF_DIR_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")


@dataclass(frozen=True)
class DatasetSummary:
    format: str
    num_examples: int
    num_messages: int
    num_assistant_messages: int
    examples: tuple[Conversation, ...] = field(repr=False)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def check_row(row: Any) -> list[str]:
    """Everything wrong with one row, as readable messages (empty when it is fine)."""
    if not isinstance(row, Mapping):
        return [f"expected a JSON object, got {_type_name(row)}"]
    messages = row.get("messages")
    if messages is None:
        return ['missing "messages"']
    if not isinstance(messages, list) or not messages:
        return ['"messages" must be a non-empty list']
    problems: list[str] = []
    roles: list[str | None] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            problems.append(f"{where} must be an object with role and content")
            roles.append(None)
            continue
        role = message.get("role")
        roles.append(role if role in ROLES else None)
        if role not in ROLES:
            shown = json.dumps(role) if role is None or isinstance(role, str) else _type_name(role)
            problems.append(f'{where}.role must be "system", "user" or "assistant", got {shown}')
        elif role == "system" and i > 0:
            problems.append(f"{where}: a system message is only allowed first")
        content = message.get("content")
        if not isinstance(content, str):
            problems.append(f"{where}.content must be a string, got {_type_name(content)}")
        elif not content.strip():
            problems.append(f"{where}.content is empty")
    if problems:
        return problems
    dialogue = [r for r in roles if r != "system"]
    if "assistant" not in dialogue:
        return ["no assistant message to learn from"]
    if dialogue[0] != "user":
        return ["the first message after the optional system message must be from the user"]
    return []


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield number, None, "not valid UTF-8"
                continue
            if not text.strip():
                continue
            try:
                yield number, json.loads(text), None
            except json.JSONDecodeError as exc:
                yield number, None, f"invalid JSON ({exc.msg} at column {exc.colno})"


def is_hf_dataset_dir(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in HF_DIR_MARKERS)


def _hf_rows(path: Path, split: str | None) -> Iterator[tuple[int, Any, str | None]]:
    try:
        import datasets
    except ImportError as exc:
        raise DatasetError([DatasetProblem(None, "reading a saved `datasets` directory needs "
                                                 "the datasets package: pip install datasets")]
                           ) from exc
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded.keys())
        chosen = split or ("train" if "train" in loaded else names[0] if len(names) == 1 else None)
        if chosen not in loaded:
            wanted = f'split "{split}" not found' if split else "choose a split"
            raise DatasetError([DatasetProblem(None, f"{wanted}; the dataset has splits: "
                                                     f"{', '.join(names)}")])
        loaded = loaded[chosen]
    elif split not in (None, "train"):
        raise DatasetError([DatasetProblem(None, f'split "{split}" not found; the directory '
                                                 "holds a single dataset without splits")])
    if "messages" not in loaded.column_names:
        raise DatasetError([DatasetProblem(None, 'the dataset has no "messages" column '
                                                 f"(columns: {', '.join(loaded.column_names)})")])
    for number, row in enumerate(loaded, start=1):
        messages = row.get("messages")
        if isinstance(messages, list):
            # Arrow structs carry every key seen in the column; drop the absent (None) ones.
            messages = [{k: v for k, v in m.items() if v is not None or k in ("role", "content")}
                        if isinstance(m, Mapping) else m for m in messages]
        yield number, {**row, "messages": messages}, None


def validate_dataset(path: Path | str, *, split: str | None = None) -> DatasetSummary:
    """Read and check every row of a JSONL file or saved ``datasets`` directory.

    Raises :class:`DatasetError` listing every bad row; nothing is trained on a dataset that
    has any.
    """
    path = Path(path)
    if is_hf_dataset_dir(path):
        fmt, unit, rows = "datasets", "row", _hf_rows(path, split)
    elif path.is_dir():
        raise DatasetError([DatasetProblem(None, f"{path.name} is a directory but not a dataset "
                                                 "saved with Dataset.save_to_disk")])
    elif path.is_file():
        fmt, unit, rows = "jsonl", "line", _jsonl_rows(path)
    else:
        raise DatasetError([DatasetProblem(None, f"dataset {path.name} not found")])
    problems: list[DatasetProblem] = []
    examples: list[Conversation] = []
    for number, row, error in rows:
        found = [error] if error else check_row(row)
        problems.extend(DatasetProblem(number, message) for message in found)
        if not found:
            examples.append([{"role": m["role"], "content": m["content"]} for m in row["messages"]])
    if problems:
        raise DatasetError(problems, unit=unit)
    if not examples:
        raise DatasetError([DatasetProblem(None, "the dataset has no examples "
                                                 "(it is empty or has only blank lines)")])
    return DatasetSummary(
        format=fmt,
        num_examples=len(examples),
        num_messages=sum(len(e) for e in examples),
        num_assistant_messages=sum(m["role"] == "assistant" for e in examples for m in e),
        examples=tuple(examples),
    )


def hold_out(examples: Iterable[Conversation], fraction: float, seed: int
             ) -> tuple[list[Conversation], list[Conversation]]:
    """Split into (train, eval): a seeded random ``fraction`` (at least one row) for eval."""
    rows = list(examples)
    if len(rows) < 2:
        raise DatasetError([DatasetProblem(None, "holding out eval rows needs at least 2 "
                                                 "examples; add rows or set evalDatasetSource")])
    count = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
    picked = set(random.Random(seed).sample(range(len(rows)), count))
    train = [r for i, r in enumerate(rows) if i not in picked]
    held = [r for i, r in enumerate(rows) if i in picked]
    return train, held


def dataset_location(
    source: DatasetSource, *, resolve_upload: Callable[[str], Path] | None = None,
    check_path: Callable[[Path], Path] | None = None,
) -> tuple[Path, str | None]:
    """Where a ``datasetSource`` lives on this server, and which split to read.

    ``huggingface`` sources are only read from disk: ``name`` (plus ``subset`` as a
    sub-directory) must be a directory written by ``Dataset.save_to_disk``. ``check_path``
    vets a path the source names before anything looks at it, and returns the path to use
    (the server passes :func:`arkor.cloud.dataset_roots.dataset_path_check`).
    """
    check = check_path or Path.expanduser
    if source.type == "local":
        assert source.path is not None
        return check(Path(source.path)), None
    if source.type == "upload":
        if resolve_upload is None:
            raise JobConfigError("datasetSource", "uploads cannot be resolved here")
        assert source.upload_id is not None
        return resolve_upload(source.upload_id), None
    assert source.name is not None
    path = Path(source.name)
    if source.subset:
        path = path / source.subset
    path = check(path)
    if not is_hf_dataset_dir(path):
        raise JobConfigError(
            "datasetSource",
            f'"{source.name}" is not a dataset directory on this server. Downloads from the '
            "Hugging Face Hub are disabled: save the dataset with Dataset.save_to_disk (or "
            'export it to JSONL) and use its path as "name", or use {"type": "local"}',
        )
    return path, source.split
