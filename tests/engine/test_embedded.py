"""The embedded model's conversion parses its GGUF once (``arkor.engine.embedded``)."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from arkor.engine.embedded import _parsed_once


def tiny_gguf(path: Path) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_file_is_read_once_while_converting_and_gguf_is_put_back(tmp_path: Path) -> None:
    first, second = tiny_gguf(tmp_path / "a.gguf"), tiny_gguf(tmp_path / "b.gguf")
    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with _parsed_once():
        one = gguf.GGUFReader(first)
        assert gguf.GGUFReader(str(first)) is one  # the same file, however it is named
        assert gguf.GGUFReader(second) is not one
        assert one.tensors[0].name == "token_embd.weight"
        arch = gguf.MODEL_ARCH.LLAMA
        assert gguf.get_tensor_name_map(arch, 2) is gguf.get_tensor_name_map(arch, 2)
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (reader, name_map)
    assert gguf.GGUFReader(first) is not gguf.GGUFReader(first)


def test_gguf_is_put_back_when_the_conversion_fails(tmp_path: Path) -> None:
    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with pytest.raises(RuntimeError, match="disk full"), _parsed_once():
        gguf.GGUFReader(tiny_gguf(tmp_path / "a.gguf"))
        raise RuntimeError("disk full")
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (reader, name_map)


def test_the_conversion_is_logged_once_with_its_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from arkor.engine import embedded

    def convert(gguf_path: Path, target: Path) -> None:
        target.mkdir()
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(embedded, "_convert", convert)  # the conversion itself: ~15 s
    with caplog.at_level("INFO", logger="arkor.engine.embedded"):
        first = embedded.ensure_embedded_model(tmp_path)
        assert embedded.ensure_embedded_model(tmp_path) == first  # already there: no log
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("converting the embedded model SmolLM2-135M-Instruct.Q4_1")
    assert str(first) in messages[0]
    assert messages[1].startswith("converted the embedded model in ")
