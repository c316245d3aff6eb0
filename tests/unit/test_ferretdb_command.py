"""stack.servers.ferretdb_command: FerretDB on SQLite in the data dir, on its own port only (issue 22)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack import servers


def test_ferretdb_listens_on_its_port_alone_with_sqlite_in_the_data_dir(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    binary = tmp_path / "ferretdb"
    binary.write_text("")
    monkeypatch.setattr(servers, "FERRETDB", binary)

    argv = servers.ferretdb_command(27123, tmp_path / "data")

    assert argv[0] == str(binary)
    assert "--handler=sqlite" in argv and f"--sqlite-url=file:{tmp_path / 'data' / 'sqlite'}/" in argv
    assert "--listen-addr=127.0.0.1:27123" in argv
    # Its HTTP debug listener defaults to 127.0.0.1:8088: two servers on one machine would clash.
    assert "--debug-addr=-" in argv and "--telemetry=disable" in argv
    assert (tmp_path / "data" / "sqlite").is_dir()


def test_without_the_build_it_says_how_to_make_it(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(servers, "FERRETDB", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="make ferretdb"):
        servers.ferretdb_command(27123, tmp_path)
