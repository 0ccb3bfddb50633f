"""The benchmark scripts refuse bad arguments with argparse's own one-line error (exit status 2)
and, without Triton, say so in one line (exit status 2) instead of a traceback. Cheap: argument
errors are raised before any work; the missing-Triton runs hide the installed Triton behind a
package that fails to import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def _argument_error(main, argv, capsys, flag):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert f"error: argument {flag}: " in err, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, flag", [
    (["--cases", "XYZ"], "--cases"), (["--cases", "P256,XYZ"], "--cases"),
    (["--configs", "v9"], "--configs"), (["--l2-tbs", "0"], "--l2-tbs"),
    (["--cases", "P512", "--configs", "v4x8"], "--configs")])
def test_kernel_model_arguments(argv, flag, capsys):
    km = pytest.importorskip("benchmarks.kernel_model")
    err = _argument_error(km.main, argv, capsys, flag)
    if "XYZ" in argv[-1]:
        assert "choose from P256, P512, P128s, F256, M512" in err


@pytest.mark.parametrize("argv, flag", [
    (["--threads", "0"], "--threads"), (["--batches", "1", "0"], "--batches"),
    (["--repeats", "0"], "--repeats"), (["--skip", "astra", "foo"], "--skip")])
def test_cpu_bench_arguments(argv, flag, capsys):
    cb = pytest.importorskip("benchmarks.cpu_bench")
    _argument_error(cb.main, argv, capsys, flag)


@pytest.mark.parametrize("argv, flag", [
    (["--size", "0"], "--size"), (["--views", "0"], "--views"), (["--batch", "0"], "--batch"),
    (["--backend", "foo"], "--backend"), (["--device", "mps"], "--device")])
def test_memory_arguments(argv, flag, capsys):
    mem = pytest.importorskip("benchmarks.memory")
    _argument_error(mem.main, argv, capsys, flag)


def test_memory_refuses_what_cannot_run_here(capsys):
    mem = pytest.importorskip("benchmarks.memory")
    if not torch.cuda.is_available():
        _argument_error(mem.main, ["--device", "cuda"], capsys, "--device")
    try:
        import torch_radon  # noqa: F401
    except Exception:  # noqa: BLE001
        err = _argument_error(mem.main, ["--backend", "torch-radon"], capsys, "--backend")
        assert "torch_radon" in err


def test_memory_backends_are_the_operators():
    mem = pytest.importorskip("benchmarks.memory")
    from operators.backends import BACKENDS
    assert mem.BACKENDS == BACKENDS


def test_memory_reports_a_failed_measurement(monkeypatch, capsys):
    """A measuring subprocess that fails: its stderr's last lines, exit status 1."""
    mem = pytest.importorskip("benchmarks.memory")
    monkeypatch.setattr(mem, "_CHILD", "import sys\nsys.exit('child says no: {args!r}')")
    with pytest.raises(SystemExit) as exc:
        mem.main(["--size", "4", "--views", "2", "--batch", "1", "--backend", "torch"])
    err = capsys.readouterr().err
    assert exc.value.code == 1
    assert "memory.py: the forward measurement failed (exit status 1)" in err
    assert "child says no: (4, 2, 1, 'torch', 'forward', 'cpu')" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, flag", [
    (["--threads", "0"], "--threads"), (["--repeats", "0"], "--repeats"),
    (["--warmup", "-1"], "--warmup"), (["--device", "foo"], "--device")]
    + ([] if torch.cuda.is_available() else [(["--device", "cuda"], "--device")]))
def test_compile_step_arguments(argv, flag, capsys):
    cs = pytest.importorskip("benchmarks.compile_step")
    _argument_error(cs.main, argv, capsys, flag)


@pytest.mark.parametrize("option, value", [("--cases", "XYZ"), ("--cases", "P512"),
                                           ("--variants", "nope")])
def test_gpu_bench_refuses_unknown_names(option, value, tmp_path, capsys):
    """Unknown names (P512 is not among the tiny cases) are refused, naming the valid ones;
    nothing is written."""
    gb = pytest.importorskip("benchmarks.gpu_bench")
    args = gb.parse_args(["--out", str(tmp_path / "out"), "--dry-run", option, value])
    err = _argument_error(lambda _: gb.main(args), None, capsys, option)
    assert "choose from" in err and ("'P128s'" in err or "'ours:triton'" in err)
    assert not (tmp_path / "out").exists()


def test_gpu_bench_selects_variants_whose_names_hold_commas():
    gb = pytest.importorskip("benchmarks.gpu_bench")
    names = [v.name for v in gb.VARIANTS]
    wanted = "ours:triton[v4, tiles 4x32 / 8x16],torchtomo:cuda, ours:triton[v4, 8 planes]"
    assert gb._subset("--variants", wanted, names) == {
        "ours:triton[v4, tiles 4x32 / 8x16]", "torchtomo:cuda", "ours:triton[v4, 8 planes]"}


def test_gpu_bench_reports_peers_that_do_not_import():
    gb = pytest.importorskip("benchmarks.gpu_bench")
    assert gb.package_version("pytest", "pytest") == pytest.__version__
    assert gb.package_version("pytest", "no_such_module_here").startswith(
        "not importable (ModuleNotFoundError: No module named 'no_such_module_here'")
    assert gb.package_version("no-such-distribution-here", "x") == "absent"


def _run(args, env=None, timeout=60):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    env.pop("TRITON_INTERPRET", None)
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("argv, flag", [
    (["--calls", "0"], "--calls"), (["--calls", "-1"], "--calls"),
    (["--repeats", "0"], "--repeats")])
def test_host_overhead_arguments(argv, flag):
    proc = _run([BENCH / "host_overhead.py", *argv])
    assert proc.returncode == 2, proc.stderr
    assert f"host_overhead.py: error: argument {flag}: must be a positive integer" in proc.stderr


def test_gpu_call_profile_arguments_and_no_gpu():
    proc = _run([BENCH / "gpu_call_profile.py", "--calls", "0"])
    assert proc.returncode == 2, proc.stderr
    assert "gpu_call_profile.py: error: argument --calls: must be a positive integer" in proc.stderr
    if not __import__("torch").cuda.is_available():
        proc = _run([BENCH / "gpu_call_profile.py"])
        assert proc.returncode == 2 and "needs a CUDA device" in proc.stderr, proc.stderr


def test_kernel_static_help_compiles_nothing():
    proc = _run([BENCH / "kernel_static.py", "--help"], timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: kernel_static.py")


@pytest.mark.parametrize("script, argv, nvidia", [
    ("host_overhead.py", ["--calls", "1", "--repeats", "1"], False),
    ("kernel_static.py", [], True),
    ("kernel_model.py", ["--cases", "P128s", "--configs", "v4"], True),
    ("racecheck_batch8.py", ["v1"], False),
    ("memcheck_kernels.py", ["--quick"], False)])
def test_scripts_without_triton_say_so(script, argv, nvidia, tmp_path):
    block = tmp_path / "block" / "triton"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text("raise ImportError('blocked for this test')\n")
    proc = _run([BENCH / script, *argv], env=dict(PYTHONPATH=str(tmp_path / "block")))
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    what = " with its NVIDIA backend" if nvidia else ""
    # Compiling for sm_90 needs the GPU floor; the others run in the interpreter here (no CUDA).
    floor = "3.6" if nvidia else "3.7"
    assert proc.stderr.splitlines() == [
        f"{script} needs Triton >= {floor}{what} (pip install triton==3.8.0): triton cannot be "
        "imported (ImportError: blocked for this test)"]


def test_gpu_call_profile_breakdown_runs_on_the_cpu_with_stubbed_kernels(monkeypatch):
    """The GPU script's host breakdown, on CPU tensors with the kernels replaced by no-ops
    (its CUDA-only parts are the device and the synchronisation): every row is there."""
    import torch
    triton = pytest.importorskip("triton")
    from operators.backends import triton_backend as TB
    problem = TB.triton_version_problem(triton.__version__, interpreting=True)
    if problem:
        pytest.skip(problem)
    monkeypatch.syspath_prepend(str(BENCH.parent))
    from benchmarks import gpu_call_profile
    from operators.backends import triton_kernels as K
    # CPU tensors pass the backend's checks; TRITON_INTERPRET itself stays unset, so that the
    # kernels' module stays compilable for the tests that compile it in this process.
    monkeypatch.setattr(TB, "_interpreting", lambda: True)

    class NoKernel:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: None

    for name in ("joseph_forward_kernel", "joseph_adjoint_kernel",
                 "joseph_adjoint_parallel_kernel"):
        monkeypatch.setattr(K, name, NoKernel())
    rows, (a, x, y) = gpu_call_profile.breakdown("tiny", 8, 4, 11, 4, 3, torch.device("cpu"))
    assert [r[1] for r in rows] == ["forward"] * 6 + ["adjoint"] * 6
    assert all(r[3] > 0 and r[4] >= r[3] for r in rows)
    assert x.shape == (4, 8, 8) and y.shape == (4, 4, 11)
