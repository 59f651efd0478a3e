"""The reports are well-formed for the harmless actions; the attacks themselves are tested
through toolsmith's API, inside the sandbox."""

import json

import pytest

from intruder.tool import run


def test_probe_describes_the_process():
    report = json.loads(run("probe"))
    assert report["uid"] >= 0
    assert "/" in report["mounts"]


def test_leave_and_find(tmp_path):
    path = str(tmp_path / "left")
    assert json.loads(run(f"find:{path}")) == {"exists": False}
    assert json.loads(run(f"leave:{path}")) == {"left": "ok"}
    assert json.loads(run(f"find:{path}")) == {"exists": True}


def test_fill_writes_what_it_says(tmp_path):
    assert json.loads(run(f"fill:{tmp_path}:2")) == {"written_mib": 2, "error": None}


def test_unknown_actions_are_refused():
    with pytest.raises(ValueError):
        run("dance")
