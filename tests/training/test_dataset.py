from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from arkor.contract.job_config import DatasetSource
from arkor.training.dataset import dataset_location, hold_out, validate_dataset
from arkor.training.demo import DEMO_LABELS, demo_dataset_path, demo_eval_path
from arkor.training.errors import DatasetError, JobConfigError


def chat(user: str = "Hi", answer: str = "LABEL: other", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": user},
                         {"role": "assistant", "content": answer}], **extra}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_demo_datasets_are_valid_and_balanced() -> None:
    train = validate_dataset(demo_dataset_path())
    held = validate_dataset(demo_eval_path())
    assert (train.format, train.num_examples, held.num_examples) == ("jsonl", 100, 24)
    answers = [e[-1]["content"] for e in train.examples]
    counts = {label: answers.count(f"LABEL: {label}") for label in DEMO_LABELS}
    assert sum(counts.values()) == 100
    assert max(counts.values()) - min(counts.values()) <= 1
    train_tickets = {e[1]["content"] for e in train.examples}
    assert not train_tickets & {e[1]["content"] for e in held.examples}


def test_every_bad_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [
        json.dumps(chat()),                                                    # 1 ok
        "{not json",                                                           # 2
        json.dumps({"text": "hello"}),                                         # 3
        json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),  # 4
        "",                                                                    # 5 blank: ok
        json.dumps({"messages": [{"role": "tool", "content": "x"},
                                 {"role": "assistant", "content": "y"}]}),     # 6
        json.dumps({"messages": [{"role": "user", "content": "   "},
                                 {"role": "assistant", "content": 42}]}),      # 7 (two problems)
        json.dumps([1, 2]),                                                    # 8
        json.dumps({"messages": [{"role": "assistant", "content": "Hello!"},
                                 {"role": "user", "content": "hi"}]}),         # 9
        json.dumps({"messages": [{"role": "user", "content": "a"},
                                 {"role": "system", "content": "late"},
                                 {"role": "assistant", "content": "b"}]}),     # 10
        json.dumps(chat()),                                                    # 11 ok
    ])
    with pytest.raises(DatasetError) as caught:
        validate_dataset(path)
    problems = caught.value.problems
    assert [p.line for p in problems] == [2, 3, 4, 6, 7, 7, 8, 9, 10]
    text = str(caught.value)
    assert text.splitlines()[0] == "Invalid dataset: 9 problems found"
    assert "line 2: invalid JSON" in text
    assert 'line 3: missing "messages"' in text
    assert "line 4: no assistant message to learn from" in text
    assert 'line 6: messages[0].role must be "system", "user" or "assistant", got "tool"' in text
    assert "line 7: messages[0].content is empty" in text
    assert "line 7: messages[1].content must be a string, got number" in text
    assert "line 8: expected a JSON object, got array" in text
    assert "line 9: the first message after the optional system message must be from" in text
    assert "line 10: messages[1]: a system message is only allowed first" in text


def test_long_problem_lists_are_capped(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.jsonl", ["{"] * 35)
    with pytest.raises(DatasetError) as caught:
        validate_dataset(path)
    lines = str(caught.value).splitlines()
    assert len(caught.value.problems) == 35
    assert lines[0] == "Invalid dataset: 35 problems found"
    assert lines[-1] == "  ... and 15 more"
    assert len(lines) == 22


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_blank_file_is_rejected(tmp_path: Path, content: str) -> None:
    path = tmp_path / "blank.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetError, match="has no examples"):
        validate_dataset(path)


def test_missing_file_and_plain_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"dataset nope\.jsonl not found"):
        validate_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(DatasetError, match=r"not a dataset saved with Dataset\.save_to_disk"):
        validate_dataset(tmp_path)


def test_invalid_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(chat()).encode() + b"\n" + b'{"messages": "\xe9"}\n')
    with pytest.raises(DatasetError, match="line 2: not valid UTF-8"):
        validate_dataset(path)


def test_saved_datasets_directory(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = [chat(f"question {i}", "LABEL: bug") for i in range(5)]
    single = tmp_path / "single"
    datasets.Dataset.from_list(rows).save_to_disk(str(single))
    summary = validate_dataset(single)
    assert (summary.format, summary.num_examples) == ("datasets", 5)
    assert summary.examples[2][0]["content"] == "question 2"

    split = tmp_path / "split"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list(rows),
        "test": datasets.Dataset.from_list(rows[:2]),
    }).save_to_disk(str(split))
    assert validate_dataset(split).num_examples == 5
    assert validate_dataset(split, split="test").num_examples == 2
    with pytest.raises(DatasetError, match='split "dev" not found; the dataset has splits: '
                                           "train, test"):
        validate_dataset(split, split="dev")


def test_saved_directory_rows_are_checked(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    bad = tmp_path / "bad"
    datasets.Dataset.from_list([
        chat(), {"messages": [{"role": "user", "content": "q"},
                              {"role": "assistant", "content": ""}]},
    ]).save_to_disk(str(bad))
    with pytest.raises(DatasetError, match=r"row 2: messages\[1\]\.content is empty"):
        validate_dataset(bad)
    no_messages = tmp_path / "text"
    datasets.Dataset.from_list([{"text": "hello"}]).save_to_disk(str(no_messages))
    with pytest.raises(DatasetError, match='no "messages" column'):
        validate_dataset(no_messages)


def test_hold_out_is_seeded_and_disjoint() -> None:
    rows = list(validate_dataset(demo_dataset_path()).examples)
    train, held = hold_out(rows, 0.1, seed=3)
    assert (len(train), len(held)) == (90, 10)
    assert hold_out(rows, 0.1, seed=3) == (train, held)
    assert hold_out(rows, 0.1, seed=4)[1] != held
    assert not {r[1]["content"] for r in train} & {r[1]["content"] for r in held}
    with pytest.raises(DatasetError, match="at least 2 examples"):
        hold_out(rows[:1], 0.1, seed=0)


def test_dataset_location(tmp_path: Path) -> None:
    local = DatasetSource("local", path=str(tmp_path / "a.jsonl"))
    assert dataset_location(local) == (tmp_path / "a.jsonl", None)
    upload = DatasetSource("upload", upload_id="up_1")
    assert dataset_location(upload, resolve_upload=lambda i: tmp_path / f"{i}.jsonl") == \
        (tmp_path / "up_1.jsonl", None)
    hub = DatasetSource("huggingface", name="arkorlab/triage-demo", split="train")
    with pytest.raises(JobConfigError, match="Downloads from the Hugging Face Hub are disabled"):
        dataset_location(hub)


def test_dataset_location_of_a_saved_directory(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list([chat()]).save_to_disk(str(tmp_path / "triage" / "en"))
    source = DatasetSource("huggingface", name=str(tmp_path / "triage"), subset="en",
                           split="train")
    assert dataset_location(source) == (tmp_path / "triage" / "en", "train")


def test_problems_can_be_told_without_the_files_content(tmp_path: Path) -> None:
    path = tmp_path / "secret.jsonl"
    path.write_text('{"messages": [{"role": "TOP-SECRET", "content": "x"}]}\nroot:x:0:0\n')
    with pytest.raises(DatasetError) as err:
        validate_dataset(path)
    assert "TOP-SECRET" in str(err.value)
    hidden = str(err.value.without_details())
    assert "TOP-SECRET" not in hidden and "root" not in hidden
    assert hidden.startswith("Invalid dataset: not a valid chat dataset (2 problems on lines 1, 2)")


def test_dataset_location_vets_a_named_path_before_looking_at_it(tmp_path: Path) -> None:
    seen: list[Path] = []

    def check(path: Path) -> Path:
        seen.append(path)
        raise JobConfigError("datasetSource", "refused")

    for source in (DatasetSource("local", path="~/a.jsonl"),
                   DatasetSource("huggingface", name="/nowhere", subset="../etc")):
        with pytest.raises(JobConfigError, match="refused"):
            dataset_location(source, check_path=check)
    assert seen == [Path("~/a.jsonl"), Path("/nowhere/../etc")]
    upload = DatasetSource("upload", upload_id="u1")
    assert dataset_location(upload, resolve_upload=lambda i: tmp_path / i,
                            check_path=check) == (tmp_path / "u1", None)
