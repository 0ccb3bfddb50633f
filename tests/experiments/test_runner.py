"""The experiment runner: command line, argument errors, config/metrics/log files, skip, force,
resume, and `run all` continuing past a failure. Uses small fake experiment modules registered
for the test (no real experiment runs here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import torch

from experiments import registry, runner
from experiments.__main__ import main

from .fake_experiments import FakeConfig


def _json(path):
    with open(path) as f:
        return json.load(f)


def test_registry_order_and_names():
    names = registry.names()
    assert names[:4] == ["seed-xor", "seed-decision-tree", "seed-activations", "seed-backprop"]
    assert names[4:] == ["fbp-demo", "baselines", "sparse-view", "learned-filter",
                         "trainable-fbp", "rebinning", "limited-angle"]
    assert registry.get("seed_xor").name == "seed-xor"
    with pytest.raises(registry.UnknownExperimentError, match="valid names: seed-xor"):
        registry.get("no-such-thing")


def test_list_names_every_experiment_and_notes_missing(fakes, capsys):
    fakes("fake_ok")
    fakes("not_written_yet", register_only=True)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "fake-ok" in out and "fake experiment fake_ok" in out
    assert "not-written-yet" in out and "does not exist" in out


def test_unknown_experiment_is_exit_2_listing_valid_names(fakes, tmp_path, capsys):
    fakes("fake_ok")
    assert main(["run", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "argument NAME" in err and "unknown experiment 'nope'" in err and "fake-ok" in err


def test_missing_module_is_exit_2(fakes, tmp_path, capsys):
    fakes("not_written_yet", register_only=True)
    assert main(["run", "not-written-yet", "--out", str(tmp_path)]) == 2
    assert "does not exist yet" in capsys.readouterr().err


def test_unwritable_output_folder_is_exit_2(fakes, tmp_path, capsys):
    fakes("fake_ok")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "below"):
        assert main(["run", "fake-ok", "--out", str(out)]) == 2
        assert "argument --out" in capsys.readouterr().err
    with pytest.raises(runner.RunnerError, match="--out"):
        runner.prepare_output(blocker / "below")


def _refuse_writes_in(folder, monkeypatch):
    """Emulate a read-only folder (chmod does not stop root, who runs CI here)."""
    real_temporary_file, real_unlink = tempfile.TemporaryFile, runner.Path.unlink

    def temporary_file(*args, dir=None, **kwargs):
        if dir is not None and runner.Path(dir) == folder:
            raise PermissionError(13, "Permission denied")
        return real_temporary_file(*args, dir=dir, **kwargs)

    def unlink(self, *args, **kwargs):
        if self.parent == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)
    monkeypatch.setattr(runner.Path, "unlink", unlink)


def test_a_read_only_experiment_folder_is_exit_2_before_any_work(fakes, tmp_path, capsys,
                                                                 monkeypatch):
    mod = fakes("fake_ok")
    assert main(["run", "fake-ok", "--out", str(tmp_path)]) == 0
    calls = len(mod.calls)
    with monkeypatch.context() as m:
        _refuse_writes_in(tmp_path / "fake-ok", m)
        assert main(["run", "fake-ok", "--out", str(tmp_path), "--force"]) == 2
        err = capsys.readouterr().err
        assert "argument --out" in err and "cannot delete the previous run's files" in err
        (tmp_path / "new").mkdir()
        _refuse_writes_in(tmp_path / "new" / "fake-ok", m)
        assert main(["run", "fake-ok", "--out", str(tmp_path / "new")]) == 2
        err = capsys.readouterr().err
        assert "argument --out" in err and "cannot write into" in err
    assert len(mod.calls) == calls


def test_unavailable_device_is_exit_2(fakes, tmp_path, capsys):
    fakes("fake_ok")
    assert main(["run", "fake-ok", "--out", str(tmp_path), "--device", "warp-drive"]) == 2
    assert "argument --device" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["run", "fake-ok", "--out", str(tmp_path), "--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert "argument --device" in err and "CUDA is not available" in err
    else:
        count = torch.cuda.device_count()
        assert main(["run", "fake-ok", "--out", str(tmp_path), "--device",
                     f"cuda:{count}"]) == 2
    assert not (tmp_path / "fake-ok").exists()


def test_bad_seed_count_is_exit_2(fakes, tmp_path, capsys):
    fakes("fake_ok")
    assert main(["run", "fake-ok", "--out", str(tmp_path), "--seeds", "0"]) == 2
    assert "argument --seeds" in capsys.readouterr().err


def test_run_writes_config_metrics_log_and_skips_then_forces(fakes, tmp_path):
    mod = fakes("fake_ok")
    assert main(["run", "fake-ok", "--tiny", "--out", str(tmp_path), "--seeds", "2"]) == 0
    folder = tmp_path / "fake-ok"
    cfg = _json(folder / "config.json")
    assert cfg["experiment"] == "fake-ok" and cfg["preset"] == "tiny"
    assert cfg["config"] == {"size": 1} and cfg["seeds"] == [0, 1]
    assert cfg["status"] == "finished" and cfg["device"] == "cpu"
    assert cfg["torch_version"] == torch.__version__ and cfg["package_version"]
    assert "git_commit" in cfg and cfg["wall_time_s"] >= 0 and cfg["started"] and cfg["finished"]
    assert cfg["description"] == "fake experiment fake_ok"
    metrics = _json(folder / "metrics.json")
    assert metrics["size"] == 1 and metrics["claims"][0]["held"] is True
    assert "fake experiment running with size 1" in (folder / "run.log").read_text()
    assert (folder / "line.png").is_file()
    assert not list(folder.glob(".*.tmp")), "no temporary files left behind"
    assert len(mod.calls) == 1 and mod.calls[0]["seeds"] == [0, 1]

    # same config: skipped, run not called again
    assert main(["run", "fake-ok", "--tiny", "--out", str(tmp_path), "--seeds", "2"]) == 0
    assert len(mod.calls) == 1
    # --force: runs from scratch (checkpoint of the previous run deleted first)
    assert main(["run", "fake-ok", "--tiny", "--out", str(tmp_path), "--seeds", "2",
                 "--force"]) == 0
    assert len(mod.calls) == 2
    assert _json(folder / "metrics.json")["resumed"] is False
    # another preset or other seeds: the finished run is kept, the command refused ...
    for other in (["--quick", "--seeds", "2"], ["--tiny"]):
        assert main(["run", "fake-ok", *other, "--out", str(tmp_path)]) == 2
        assert len(mod.calls) == 2 and _json(folder / "metrics.json")["size"] == 1
    # ... unless forced: then it runs again, and the stored config follows
    assert main(["run", "fake-ok", "--quick", "--out", str(tmp_path), "--force"]) == 0
    assert len(mod.calls) == 3 and mod.calls[-1]["seeds"] == [0]
    assert _json(folder / "config.json")["config"] == {"size": 2}


def test_a_finished_run_is_never_replaced_by_another_without_force(fakes, tmp_path, capsys):
    """``run NAME --tiny`` into the folder of a finished ``--quick`` run deleted it silently
    (metrics, checkpoints, log); now it is refused by name and nothing changes."""
    mod = fakes("fake_ok")
    assert main(["run", "fake-ok", "--quick", "--seeds", "2", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "fake-ok"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert main(["run", "fake-ok", "--tiny", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "argument --out" in err and "holds a finished run of another configuration" in err
    assert "preset quick, seeds [0, 1]" in err and "--force" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    mod.PRESETS = dict(mod.PRESETS, quick=FakeConfig(7))  # the code's preset changed since
    assert main(["run", "fake-ok", "--quick", "--seeds", "2", "--out", str(tmp_path)]) == 2
    assert "with other settings: the preset's config has changed" in capsys.readouterr().err


def test_empty_out_and_absurd_seed_counts_are_argument_errors(fakes, tmp_path, capsys,
                                                               monkeypatch):
    fakes("fake_ok")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:  # argparse's own exit, as for any bad flag
        main(["run", "fake-ok", "--tiny", "--out", ""])
    assert exit_info.value.code == 2
    assert "argument --out: an empty path" in capsys.readouterr().err
    assert not (tmp_path / "fake-ok").exists()  # not written into the current folder
    out = tmp_path / "never"
    for count in ("0", "99999999999999999999"):
        assert main(["run", "fake-ok", "--tiny", "--out", str(out), "--seeds", count]) == 2
        assert "argument --seeds" in capsys.readouterr().err
    assert not out.exists(), "a refused command creates no output folder"


def test_a_run_removes_temporaries_of_killed_writes_and_keeps_its_history(fakes, tmp_path,
                                                                          capsys):
    """Temporaries of atomic writes killed before their rename are removed when the run
    starts again; config.json keeps the earlier attempts (each may be another commit)."""
    mod = fakes("fake_resume", behaviour="fail_once")
    assert main(["run", "fake-resume", "--tiny", "--out", str(tmp_path)]) == 1
    folder = tmp_path / "fake-resume"
    (folder / "data").mkdir()
    stale = [folder / ".metrics.json.abc123.tmp", folder / "data" / ".data.pt.xyz.tmp"]
    for path in stale:
        path.write_bytes(b"half written")
    assert main(["run", "fake-resume", "--tiny", "--out", str(tmp_path)]) == 0
    assert not any(p.exists() for p in stale)
    cfg = _json(folder / "config.json")
    assert cfg["attempt"] == 2 and cfg["status"] == "finished"
    first = cfg["previous_attempts"]
    assert len(first) == 1 and first[0]["attempt"] == 1 and first[0]["status"] == "failed"
    assert "git_commit" in first[0] and first[0]["started"]
    headers = [line for line in (folder / "run.log").read_text().splitlines() if "===" in line]
    assert len(headers) == 2 and all(", commit " in line for line in headers)
    assert len(mod.calls) == 2


def test_a_killed_run_shows_as_stopped_in_the_report(fakes, tmp_path):
    """A run killed without a chance to record it (SIGKILL) stays "running" in config.json;
    the report tells it from a live one by its process."""
    from experiments.report import collect
    fakes("fake_ok")
    assert main(["run", "fake-ok", "--tiny", "--out", str(tmp_path)]) == 0
    path = tmp_path / "fake-ok" / "config.json"
    cfg = _json(path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pid, expected in ((dead.pid, "stopped"), (os.getpid(), "running")):
        path.write_text(json.dumps(dict(cfg, status="running", pid=pid)))
        (record,) = [r for r in collect(tmp_path) if r.name == "fake-ok"]
        assert record.status == expected


def test_default_preset_is_quick(fakes, tmp_path):
    mod = fakes("fake_ok")
    assert main(["run", "fake-ok", "--out", str(tmp_path)]) == 0
    assert mod.calls[0]["config"] == FakeConfig(2)


def test_failed_run_resumes_from_its_checkpoint(fakes, tmp_path):
    mod = fakes("fake_resume", behaviour="fail_once")
    assert main(["run", "fake-resume", "--tiny", "--out", str(tmp_path)]) == 1
    folder = tmp_path / "fake-resume"
    cfg = _json(folder / "config.json")
    assert cfg["status"] == "failed" and "interrupted half way" in cfg["error"]
    assert not (folder / "metrics.json").exists()
    assert "interrupted half way" in (folder / "run.log").read_text()
    # same command again: the runner calls run in the same folder, which finds its checkpoint
    assert main(["run", "fake-resume", "--tiny", "--out", str(tmp_path)]) == 0
    assert _json(folder / "metrics.json")["resumed"] is True
    cfg = _json(folder / "config.json")
    assert cfg["status"] == "finished" and cfg["attempt"] == 2 and cfg["error"] is None
    assert len(mod.calls) == 2
    assert (folder / "run.log").read_text().count("=== fake-resume") == 2


def test_non_dict_result_is_a_failure(fakes, tmp_path):
    fakes("fake_bad", behaviour="not_a_dict")
    outcome = runner.run_experiment("fake-bad", tmp_path, preset="tiny")
    assert outcome.status == "failed" and "expected a dict" in outcome.error


def test_run_all_continues_after_a_failure_and_writes_the_report(fakes, tmp_path, capsys):
    fakes("fake_first", behaviour="fail")
    good = fakes("fake_second")
    fakes("fake_later", register_only=True)
    code = main(["run", "all", "--tiny", "--out", str(tmp_path)])
    assert code == 1
    captured = capsys.readouterr()
    assert "fake-first: failed" in captured.out and "deliberate failure" in captured.out
    assert "fake-second: finished" in captured.out
    assert "fake-later: missing" in captured.out
    assert "failed: fake-first" in captured.err
    assert len(good.calls) == 1 and (tmp_path / "fake-second" / "metrics.json").is_file()
    html = (tmp_path / "index.html").read_text()
    md = (tmp_path / "REPORT.md").read_text()
    for text in (html, md):
        assert "fake-first" in text and "deliberate failure" in text
        assert "size is positive" in text
        assert "fake_later.py does not exist yet" in text
    # a second `run all` skips the finished experiment and retries the failed one
    assert main(["run", "all", "--tiny", "--out", str(tmp_path)]) == 1
    assert len(good.calls) == 1


def test_report_command(fakes, tmp_path, capsys):
    fakes("fake_ok")
    assert main(["report", "--out", str(tmp_path / "nowhere")]) == 2
    assert "argument --out" in capsys.readouterr().err
    assert main(["run", "fake-ok", "--tiny", "--out", str(tmp_path)]) == 0
    assert main(["report", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "index.html").is_file() and (tmp_path / "REPORT.md").is_file()


def test_module_violating_the_protocol_is_reported(fakes, tmp_path):
    mod = fakes("fake_broken")
    del mod.PRESETS["tiny"]
    with pytest.raises(registry.ProtocolError, match="PRESETS misses tiny"):
        runner.run_experiment("fake-broken", tmp_path, preset="tiny")
    outcomes = runner.run_all(tmp_path, preset="tiny", report=False)
    assert outcomes[0].status == "failed" and "ProtocolError" in outcomes[0].error


def test_unregistered_experiment_modules_are_found_without_import(monkeypatch, tmp_path):
    import experiments

    (tmp_path / "stray_experiment.py").write_text(
        "raise ImportError('must not be imported')\nNAME = 'stray'\ndef run(config, out):\n"
        "    pass\n")
    (tmp_path / "helper_measures.py").write_text("def measure(x):\n    return x\n")
    (tmp_path / "seed_xor.py").write_text("NAME = 'seed-xor'\ndef run():\n    pass\n")
    monkeypatch.setattr(experiments, "__path__", [str(tmp_path)])
    assert registry.unregistered_modules() == ["stray_experiment"]


def test_an_output_that_is_a_file_fails_that_experiment_only(fakes, tmp_path, capsys):
    """OUT/NAME is a file: that experiment fails naming --out, `run all` goes on."""
    fakes("fake_first")
    good = fakes("fake_second")
    (tmp_path / "fake-first").write_text("not a folder")
    assert main(["run", "all", "--tiny", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "fake-first: failed" in out and "argument --out" in out and "is not a folder" in out
    assert len(good.calls) == 1 and (tmp_path / "REPORT.md").is_file()


def test_files_without_a_config_are_refused_unless_forced(fakes, tmp_path):
    """Caches of an unknown run (no readable config.json) are not resumed as this run's."""
    mod = fakes("fake_ok")
    folder = tmp_path / "fake-ok"
    folder.mkdir()
    (folder / "checkpoint.txt").write_text("half done")  # would make the run 'resume'
    with pytest.raises(runner.RunnerError, match="holds files but no readable config.json"):
        runner.run_experiment("fake-ok", tmp_path, preset="tiny")
    outcome = runner.run_experiment("fake-ok", tmp_path, preset="tiny", force=True)
    assert outcome.status == "finished" and mod.calls
    assert _json(folder / "metrics.json")["resumed"] is False


def test_an_experiment_using_fewer_seeds_records_the_ones_it_used(fakes, tmp_path):
    mod = fakes("fake_ok")
    mod.SEEDS_USED = 1
    runner.run_experiment("fake-ok", tmp_path, preset="tiny", seeds=3)
    assert mod.calls[-1]["seeds"] == [0]
    assert _json(tmp_path / "fake-ok" / "config.json")["seeds"] == [0]
    # asking for 2 next time is the same run: skipped, not recomputed
    assert runner.run_experiment("fake-ok", tmp_path, preset="tiny", seeds=2).status == "skipped"


def test_report_counts_only_claims_of_finished_runs(fakes, tmp_path, capsys, monkeypatch):
    from experiments import report

    fakes("fake_ok")
    assert main(["run", "fake-ok", "--tiny", "--out", str(tmp_path)]) == 0
    orphan = tmp_path / "fake-orphan"
    orphan.mkdir()  # metrics.json without config.json: shown as "not run", its claims not counted
    (orphan / "metrics.json").write_text(json.dumps(
        {"claims": [{"claim": "orphan claim", "held": True}, {"claim": "text", "held": "false"}]}))
    records = [report._record(tmp_path, "fake-ok"), report._record(tmp_path, "fake-orphan")]
    rows = report.claims_table(records)
    assert [r[2] for r in rows] == ["size is positive"]
    # a report that cannot be written is a usage error naming --out, whatever the OSError
    monkeypatch.setattr(report, "write_report",
                        lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError(2, "gone")))
    assert main(["report", "--out", str(tmp_path)]) == 2
    assert "argument --out: cannot write the report (gone)" in capsys.readouterr().err


def test_sigterm_is_an_interruption_too(fakes, tmp_path, capsys):
    """``kill`` or ``timeout`` (SIGTERM) used to leave the run "running" for ever."""
    mod = fakes("fake_ok")

    def terminated(config, out, *, device, seeds):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM did not interrupt the run")

    mod.run = terminated
    previous = signal.getsignal(signal.SIGTERM)
    assert main(["run", "fake-ok", "--tiny", "--out", str(tmp_path)]) == 130
    assert _json(tmp_path / "fake-ok" / "config.json")["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) == previous  # restored after the command


def test_ctrl_c_marks_the_run_interrupted_and_exits_130(fakes, tmp_path, capsys):
    mod = fakes("fake_ok")

    def interrupted(config, out, *, device, seeds):
        raise KeyboardInterrupt

    mod.run = interrupted
    assert main(["run", "fake-ok", "--tiny", "--out", str(tmp_path)]) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert _json(tmp_path / "fake-ok" / "config.json")["status"] == "interrupted"
