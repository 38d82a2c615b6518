"""The supervisor's fault paths, against fake runners (stdlib + schemas, no model).

Every test also checks with psutil that no runner process (or grandchild) is left behind.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from orchestrator.images import hash_file
from orchestrator.models import envbuild
from orchestrator.run import pipeline
from orchestrator.run.jobs import Limits, RunOptions
from orchestrator.run.launch import wait_for_exits
from orchestrator.run.processes import RunnerProcess
from orchestrator.run.supervisor import LOADING_AHEAD, MESSAGE_CHARS, one_line
from tests.integration.helpers import alive, fake_job, images, run, started_pids
from tests.support import spec

NAMES = ["a.jpg", "b.jpg", "c.jpg"]


@pytest.fixture(autouse=True)
def no_orphans(tmp_path: Path):
    yield
    if (tmp_path / "pids").exists():
        time.sleep(0.2)
        assert alive(started_pids(tmp_path)) == [], "a runner process outlived the supervisor"


def test_all_ok(tmp_path: Path) -> None:
    info, cells = run(fake_job(tmp_path, "ok"), images(tmp_path, NAMES))
    assert [cells[n]["status"] for n in NAMES] == ["ok"] * 3
    assert cells["a.jpg"]["tags"][0]["name"].startswith("len")
    assert info.status == "ok" and info.load["device"] == "cpu" and info.reloads == []
    assert len(started_pids(tmp_path)) == 1, "one runner serves every image"


def test_hang_becomes_timeout_and_runner_restarts(tmp_path: Path) -> None:
    limits = Limits(hello_s=30, load_s=30, infer_s=1.0)
    info, cells = run(fake_job(tmp_path, "hang_on:2", limits), images(tmp_path, NAMES))
    assert [cells[n]["status"] for n in NAMES] == ["ok", "timeout", "ok"]
    assert "1 s per image" in cells["b.jpg"]["message"] and "--timeout" in cells["b.jpg"]["fix"]
    assert info.timeouts == 1 and len(info.reloads) == 1 and info.reloads[0] > 0
    assert len(started_pids(tmp_path)) == 2


def test_timeout_kills_grandchildren(tmp_path: Path) -> None:
    limits = Limits(hello_s=30, load_s=30, infer_s=1.0)
    run(fake_job(tmp_path, "fork_child,hang_on:1", limits), images(tmp_path, NAMES[:1]))
    assert len(started_pids(tmp_path)) == 2  # runner + its sleeping child; the fixture checks both died


def test_crash_is_retried_once_on_a_fresh_runner(tmp_path: Path) -> None:
    info, cells = run(fake_job(tmp_path, "crash_on:2"), images(tmp_path, NAMES))
    # b.jpg killed runner 1; c.jpg ran on runner 2 (its 1st request); b.jpg retried as runner 2's 2nd
    # request... which crashes again by construction, so it is marked a poison image.
    assert cells["a.jpg"]["status"] == "ok" and cells["c.jpg"]["status"] == "ok"
    assert cells["b.jpg"]["status"] == "crashed"
    assert "SIGKILL" in cells["b.jpg"]["message"] and "twice" in cells["b.jpg"]["message"]
    assert cells["b.jpg"]["attempts"][0]["status"] == "crashed"
    assert info.crashes == 2


def test_poison_image_not_retried_and_others_complete(tmp_path: Path) -> None:
    names = ["a.jpg", "poison.jpg", "c.jpg", "d.jpg"]
    info, cells = run(fake_job(tmp_path, "crash_on_name:poison.jpg"), images(tmp_path, names))
    assert {n: cells[n]["status"] for n in names} == {
        "a.jpg": "ok",
        "poison.jpg": "crashed",
        "c.jpg": "ok",
        "d.jpg": "ok",
    }
    poison = cells["poison.jpg"]
    assert "exited with code 3" in poison["message"] and "not retried" in poison["message"]
    assert "poison image, exiting 3" in poison["stderr_tail"]
    assert len(started_pids(tmp_path)) == 2  # runner 1 dies on poison; runner 2 does c, d, then the retry


def test_after_a_failure_no_photo_is_decoded_during_a_load(tmp_path: Path) -> None:
    """A photo that kills the runner while it is decoded during the load would fail every load
    after it: once a runner has failed, the next ones decode only in infer, where the photo is
    found and isolated like any poison image."""
    names = ["a.jpg", "poison.jpg", "c.jpg"]
    info, cells = run(fake_job(tmp_path, "crash_decoding_ahead,crash_on_name:poison.jpg"), images(tmp_path, names))
    assert {n: cells[n]["status"] for n in names} == {"a.jpg": "ok", "poison.jpg": "crashed", "c.jpg": "ok"}
    assert info.status == "ok"
    loads = [line for line in Path(info.log_path).read_text().splitlines() if "load decode_ahead=" in line]
    assert loads == ["fake runner: load decode_ahead=True"] + ["fake runner: load decode_ahead=False"] * 2
    assert len(started_pids(tmp_path)) == 3  # dies in its load; dies on poison; does c and the retry


def test_crash_without_retry_is_final(tmp_path: Path) -> None:
    limits = Limits(hello_s=30, load_s=30, infer_s=5, retry_crashed=False)
    _, cells = run(fake_job(tmp_path, "crash_on:2", limits), images(tmp_path, NAMES))
    assert [cells[n]["status"] for n in NAMES] == ["ok", "crashed", "ok"]
    assert "attempts" not in cells["b.jpg"]


def test_crash_at_start_spends_budget_then_skips(tmp_path: Path) -> None:
    limits = Limits(hello_s=30, load_s=30, infer_s=5, max_restarts=2)
    info, cells = run(fake_job(tmp_path, "crash_at_start", limits), images(tmp_path, NAMES))
    assert [cells[n]["status"] for n in NAMES] == ["skipped"] * 3
    assert "restart budget spent" in cells["a.jpg"]["message"]
    assert "crashing at start as asked" in cells["a.jpg"]["message"]  # the stderr tail explains it
    assert info.status == "skipped" and len(started_pids(tmp_path)) == 3  # 1 start + 2 restarts


def test_garbage_on_stdout_is_a_protocol_violation(tmp_path: Path) -> None:
    limits = Limits(hello_s=30, load_s=30, infer_s=5, max_restarts=1)
    _, cells = run(fake_job(tmp_path, "garbage", limits), images(tmp_path, NAMES))
    assert cells["a.jpg"]["status"] == "skipped"
    assert "not a protocol frame" in cells["a.jpg"]["message"] and "b'Loadin'" in cells["a.jpg"]["message"]


def test_huge_frame_is_refused_before_buffering(tmp_path: Path) -> None:
    limits = Limits(hello_s=30, load_s=30, infer_s=5, max_restarts=1, retry_crashed=False)
    info, cells = run(fake_job(tmp_path, "huge_frame", limits), images(tmp_path, NAMES))
    assert cells["a.jpg"]["status"] == "crashed"
    assert "over the" in cells["a.jpg"]["message"] and "limit" in cells["a.jpg"]["message"]
    assert cells["c.jpg"]["status"] == "skipped" and info.status == "skipped"


def test_slow_load_times_out(tmp_path: Path) -> None:
    limits = Limits(hello_s=30, load_s=0.5, infer_s=5, max_restarts=0)
    info, cells = run(fake_job(tmp_path, "slow_load:30", limits), images(tmp_path, NAMES[:2]))
    assert [cells[n]["status"] for n in NAMES[:2]] == ["skipped", "skipped"]
    assert "no reply to 'load' within 0.5 s" in cells["a.jpg"]["message"]


def test_slow_load_within_deadline_is_fine(tmp_path: Path) -> None:
    info, cells = run(fake_job(tmp_path, "slow_load:1"), images(tmp_path, NAMES[:1]))
    assert cells["a.jpg"]["status"] == "ok"


def test_missing_weights_skip_with_fix(tmp_path: Path) -> None:
    info, cells = run(fake_job(tmp_path, "weights_missing"), images(tmp_path, NAMES))
    assert [cells[n]["status"] for n in NAMES] == ["skipped"] * 3
    assert "--weights fake=" in cells["a.jpg"]["fix"]
    assert len(started_pids(tmp_path)) == 1, "a deterministic load failure is not retried"


def test_a_long_load_error_is_one_bounded_line_naming_the_log(tmp_path: Path) -> None:
    """A library's message of hundreds of model types reaches the user as its first line, cut, and the
    log's name; the cell's `error` keeps the whole text."""
    job = fake_job(tmp_path, "load_error_long")
    info, cells = run(job, images(tmp_path, NAMES[:1]))
    cell = cells["a.jpg"]
    assert cell["status"] == "error" and cell["message"].startswith("model failed to load: ValueError: Unrecognized")
    assert "\n" not in cell["message"] and len(cell["message"]) < MESSAGE_CHARS + len(str(job.log_path)) + 80
    assert cell["message"].endswith(f"... (full text in {job.log_path})") and "type299" not in cell["message"]
    assert "type299" in cell["error"]["message"] and "second line" in cell["error"]["message"]
    assert info.status == "failed" and info.message == cell["message"]


def test_one_line() -> None:
    assert one_line("short message", "LOG") == "short message"
    assert one_line("first\nsecond", "LOG") == "first (full text in LOG)"
    assert one_line("x" * 500, "LOG", limit=10) == "xxxxxxxxxx... (full text in LOG)"
    assert one_line("\n\n  padded  \n", "LOG") == "padded"


def test_error_reply_fails_only_that_request(tmp_path: Path) -> None:
    _, cells = run(fake_job(tmp_path, "error_on:2"), images(tmp_path, NAMES))
    assert [cells[n]["status"] for n in NAMES] == ["ok", "error", "ok"]
    assert cells["b.jpg"]["error"]["type"] == "ValueError"


def test_batch_crash_isolates_the_culprit(tmp_path: Path) -> None:
    names = ["a.jpg", "poison.jpg", "c.jpg", "d.jpg"]
    _, cells = run(fake_job(tmp_path, "crash_on_name:poison.jpg", batch_size=2), images(tmp_path, names))
    assert {n: cells[n]["status"] for n in names} == {
        "a.jpg": "ok",
        "poison.jpg": "crashed",
        "c.jpg": "ok",
        "d.jpg": "ok",
    }


def _kill_when_in_flight(tmp_path: Path, marker: str) -> threading.Thread:
    """SIGKILL the runner from outside once its log shows `marker` (an image in flight)."""

    def killer() -> None:
        log = tmp_path / "logs" / "fake.log"
        for _ in range(200):
            if log.exists() and marker in log.read_text():
                pid = max(started_pids(tmp_path), key=lambda p: (tmp_path / "pids" / str(p)).stat().st_mtime)
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    return thread


def test_runner_killed_from_outside(tmp_path: Path) -> None:
    """The image in flight is `crashed` with the signal; the run goes on. (Retry: test_cli_lifecycle.)"""
    limits = Limits(hello_s=30, load_s=30, infer_s=20, retry_crashed=False)
    killer = _kill_when_in_flight(tmp_path, "infer #2")
    info, cells = run(fake_job(tmp_path, "hang_on:2", limits), images(tmp_path, NAMES))
    killer.join()
    assert [cells[n]["status"] for n in NAMES] == ["ok", "crashed", "ok"]
    assert "killed by SIGKILL" in cells["b.jpg"]["message"] and "infer #2" in cells["b.jpg"]["stderr_tail"]
    assert info.crashes == 1 and len(info.reloads) == 1


def test_missing_interpreter_skips_with_fix(tmp_path: Path) -> None:
    job = fake_job(tmp_path, "ok")
    job.python = tmp_path / "gone" / "bin" / "python"
    info, cells = run(job, images(tmp_path, NAMES[:1]))
    assert cells["a.jpg"]["status"] == "skipped" and "cannot start the runner" in cells["a.jpg"]["message"]
    assert cells["a.jpg"]["fix"] == "make setup-envs MODELS=fake"


def test_the_next_image_is_sent_before_the_reply(tmp_path: Path, monkeypatch) -> None:
    """One batch waits in the runner while it computes another: the runner never waits for the
    orchestrator to store a result and read the next file."""
    events: list[str] = []
    request, reply = RunnerProcess.request, RunnerProcess.reply

    def spy_request(self: RunnerProcess, op: str, **fields: object) -> int:
        if op == "infer":
            events.append("send " + ",".join(i["name"].rsplit("/", 1)[-1] for i in fields["images"]))  # type: ignore[attr-defined]
        return request(self, op, **fields)

    def spy_reply(self: RunnerProcess, req_id: int, timeout: float) -> dict:
        result = reply(self, req_id, timeout)
        if "results" in result:
            events.append("reply " + ",".join(str(r["tags"][0]["name"]) for r in result["results"]))
        return result

    monkeypatch.setattr(RunnerProcess, "request", spy_request)
    monkeypatch.setattr(RunnerProcess, "reply", spy_reply)
    names = [f"{i:02d}.jpg" for i in range(LOADING_AHEAD + 2)]
    imgs = images(tmp_path, names)
    _, cells = run(fake_job(tmp_path, "ok"), imgs)
    assert [cells[n]["status"] for n in names] == ["ok"] * len(names)
    replies = [f"reply {cells[n]['tags'][0]['name']}" for n in names]
    # LOADING_AHEAD photos go while the runner loads (it decodes them meanwhile); then, once only
    # one of them waits behind the one computed, the next photo goes with each reply
    first = LOADING_AHEAD
    assert events == (
        [f"send {n}" for n in names[:first]]
        + replies[: first - 1]
        + [f"send {names[first]}", replies[first - 1], f"send {names[first + 1]}"]
        + replies[first:]
    )


def test_a_stopped_runner_exits_in_the_background(tmp_path: Path) -> None:
    """Freeing a model takes a while: the run goes on (the next model waits for it, and so does the
    command's end: wait_for_exits), and the runner is gone once waited for."""
    t0 = time.monotonic()
    _, cells = run(fake_job(tmp_path, "slow_exit:2"), images(tmp_path, NAMES[:1]))
    assert cells["a.jpg"]["status"] == "ok" and time.monotonic() - t0 < 2, "the run did not wait for the exit"
    assert alive(started_pids(tmp_path)), "still exiting"
    wait_for_exits()
    assert alive(started_pids(tmp_path)) == []


def test_the_runner_started_early_is_the_one_that_runs(tmp_path: Path, monkeypatch) -> None:
    """The early runner loads while the images are hashed, then serves them: one runner, every cell."""
    monkeypatch.setattr(envbuild, "env_state", lambda env: ("ready", ""))
    monkeypatch.setattr(pipeline, "model_job", lambda *args, **kw: fake_job(tmp_path, "ok"))
    analysis = pipeline.Analysis([], [spec("fake")], RunOptions())
    analysis.start_early()
    for _ in range(200):  # the fake runner writes its pid file as it starts
        if started_pids(tmp_path):
            break
        time.sleep(0.05)
    assert len(started_pids(tmp_path)) == 1, "started before any image is known"
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(name.encode())
    analysis.set_images([hash_file(tmp_path / n) for n in ("a.jpg", "b.jpg")])
    doc = analysis.run().document()
    analysis.close()
    assert [i["results"]["fake"]["status"] for i in doc["images"]] == ["ok", "ok"]
    assert len(started_pids(tmp_path)) == 1, "the runner started early served every image"


def test_a_failure_the_store_does_not_take_is_said(tmp_path: Path, monkeypatch, capsys) -> None:
    """A photo times out while the store keeps its earlier done cell (a failed cell never replaces a
    done one): the document shows the done cell, so it names the failure (failures_kept), and the
    end-of-run summary counts this run's failures and names the kept result."""
    import json

    import jsonschema

    from orchestrator.cli.stores import store_summary
    from orchestrator.paths import PROJECT_ROOT
    from orchestrator.report.flat import to_json
    from orchestrator.store import ResultStore

    monkeypatch.setattr(envbuild, "env_state", lambda env: ("ready", ""))
    store = ResultStore(tmp_path / "results.sqlite")
    imgs = images(tmp_path, NAMES)
    behaviour = "ok"
    monkeypatch.setattr(
        pipeline,
        "model_job",
        lambda *args, **kw: fake_job(tmp_path, behaviour, Limits(hello_s=30, load_s=30, infer_s=1.0)),
    )
    first = pipeline.Analysis(imgs, [spec("fake")], RunOptions(), store=store)
    first.run()
    assert first.exit_code() == 0 and first.failures_kept == [] and first.failed_now == 0
    behaviour = "hang_on:2"  # b.jpg times out this time
    second = pipeline.Analysis(imgs, [spec("fake")], RunOptions(), store=store, force=True)
    doc = second.run().document()
    assert second.exit_code() == 1, "this run failed a cell"
    assert [i["results"]["fake"]["status"] for i in doc["images"]] == ["ok", "ok", "ok"], "the done cell is kept"
    [kept] = doc["failures_kept"]
    assert (kept["model"], kept["path"], kept["status"]) == ("fake", str(tmp_path / "b.jpg"), "timeout")
    assert "no result within 1 s" in kept["message"] and kept["sha256"] == imgs[1].sha256
    schema = json.loads((PROJECT_ROOT / "schemas" / "result.schema.json").read_text())
    jsonschema.validate(json.loads(to_json(doc)), schema)
    store_summary(second)
    said = capsys.readouterr().err
    assert "3 computed, 1 failed" in said, said
    assert "1 result(s) failed in this run but the store kept their earlier done result" in said
    assert f"fake on {tmp_path / 'b.jpg'}: timeout" in said
    second.close()
