"""The runner-side remote-code policy (runners/_remote.py): trust_remote_code only when model.toml
allows it, and only at the pinned revision or the user's local folder."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from runners._remote import RemoteCodeRefused, remote_code_source
from runners.base import WeightsMissing
from schemas.protocol import ERROR_WEIGHTS_MISSING, LoadSpec


def _spec(**over: object) -> LoadSpec:
    spec: LoadSpec = {
        "name": "m",
        "hub_id": "org/m",
        "revision": "2025-06-21",
        "local_path": None,
        "offline": False,
        "device": "cpu",
        "dtype": "auto",
        "cache_dir": "",
        "options": {},
        "remote_code": True,
    }
    return cast(LoadSpec, {**spec, **over})  # `over` may break the types on purpose (remote_code=None)


def test_pinned_hub_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert remote_code_source(_spec()) == ("org/m", {"trust_remote_code": True, "revision": "2025-06-21"})
    source, kwargs = remote_code_source(_spec(offline=True))
    assert kwargs["local_files_only"] is True and kwargs["revision"] == "2025-06-21"


def test_local_folder_is_what_the_user_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert remote_code_source(_spec(local_path=str(tmp_path))) == (str(tmp_path), {"trust_remote_code": True})


def test_a_local_folder_without_config_json_says_what_was_expected(tmp_path: Path) -> None:
    """Not transformers' list of every model type it knows: the folder, and what it is not."""
    with pytest.raises(WeightsMissing, match=r"has no config.json: not a snapshot folder of org/m") as caught:
        remote_code_source(_spec(local_path=str(tmp_path)))
    assert caught.value.error_type == ERROR_WEIGHTS_MISSING and str(tmp_path) in str(caught.value)


@pytest.mark.parametrize(
    "spec, message",
    [
        (_spec(remote_code=False), "does not say remote_code = true"),
        (_spec(remote_code=None), "does not say remote_code = true"),
        (_spec(revision="main"), "unpinned revision 'main'"),
        (_spec(revision=""), "unpinned revision"),
    ],
)
def test_refused(spec: LoadSpec, message: str) -> None:
    with pytest.raises(RemoteCodeRefused, match=message):
        remote_code_source(spec)
