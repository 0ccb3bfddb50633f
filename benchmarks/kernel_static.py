"""Static report of the Triton kernels compiled for an H100/H200 (sm_90), no GPU needed.

For each benchmark launch configuration (v1 and v2 ``KernelConfig``), compile the forward and
adjoint kernels ahead of time with the runtime's specialisation (channels-last, aligned
strides, float32) and count, in the generated code:

* in the innermost loop's PTX (one step of a ray in the forward, one candidate ray of a pixel
  in the adjoint): CTA barriers and shared-memory accesses (layout conversions of per-ray /
  per-pixel values between the threads, or cross-warp reductions), 128-bit global loads,
  float64 instructions, and all instructions (less the dead zeroing moves Triton writes before
  unpredicated loads, which ptxas removes);
* ``instr / image``: those instructions over the images one thread serves per iteration, a
  proxy for the issue cost of one gather (lower is better; it ignores memory stalls);
* in the forward's machine code (SASS, ``nvdisasm``), per step: the instructions ptxas
  issues, and the load rounds: loads issued before any of them is used, each round a memory
  latency per step (an L1 hit or more).

Usage::

    python benchmarks/kernel_static.py            # prints a markdown table

Needs ``triton`` with its NVIDIA backend (CUDA builds of PyTorch and ``pip install triton``
ship it); no GPU.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Prints a markdown table on stdout (a few minutes: every launch is compiled).")
    return ap.parse_args(argv)


if __name__ == "__main__":  # --help and a missing Triton answered before the imports below
    parse_args()
    from _triton_check import require_triton
    require_triton("kernel_static.py", nvidia=True)

import torch  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
import triton  # noqa: E402

from operators.backends import triton_kernels as K  # noqa: E402
from operators.backends.triton_backend import KernelConfig, _vector_width  # noqa: E402

F32, F64, I32, C = "*fp32", "*fp64", "i32", "constexpr"

FWD_SIG = dict(x_ptr=F32, out_ptr=F32, slope_ptr=F64, icpt_ptr=F64, step_ptr=F64,
               kmin_ptr="*i32", kmax_ptr="*i32", n_views=I32, n_det=I32, n_batch=I32,
               width=I32, height=I32, x_pix_q=I32, x_b_stride=C, x_half_q=I32,
               x_plane_q=I32, out_ray_stride=C, out_b_stride=I32, order_ptr="*i32",
               VIEW_BLOCK=C, DET_BLOCK=C, GROUP=C, GROUPS=C, TRANSPOSED=C, VEC=C, EVEN_B=C,
               DTYPE=C, FRAMED=C, PLANAR=C, PAIR_OFFSET=C, ORDERED=C)
ADJ_SIG = dict(y_ptr=F32, out_ptr=F32, slope_ptr=F64, icpt_ptr=F64, step_ptr=F64,
               view_ptr=F32, count_ptr="*i32", count_v_stride=I32, count_t_stride=I32,
               n_views=I32, n_det=I32, n_batch=I32, height=I32, width=I32,
               y_ray_q=I32, y_b_stride=C, y_plane_q=I32, out_pix_stride=C, out_b_stride=I32,
               det_scale="fp32", det_shift="fp32", sdd="fp32", TILE_H=C, TILE_W=C,
               GROUP=C, GROUPS=C, GEOM=C, PAD=C, VEC=C, EVEN_B=C, DTYPE=C,
               COUNT_FROM_TABLE=C, PLANAR=C, CLAMPED=C)
PAR_SIG = dict(y_ptr=F32, out_ptr=F32, pview_ptr=F64, count_ptr="*i32", n_views=I32,
               n_det=I32, n_batch=I32, height=I32, width=I32, y_ray_q=I32, y_b_stride=C,
               y_plane_q=I32, out_pix_stride=C, out_b_stride=I32, frame=I32, TILE_H=C,
               TILE_W=C, GROUP=C, GROUPS=C, VEC=C, EVEN_B=C, DTYPE=C, PLANAR=C, FRAMED=C)
FWD_PTRS = ["x_ptr", "out_ptr", "slope_ptr", "icpt_ptr", "step_ptr", "kmin_ptr", "kmax_ptr"]
ADJ_PTRS = ["y_ptr", "out_ptr", "slope_ptr", "icpt_ptr", "step_ptr", "view_ptr", "count_ptr"]


def compile_sm90(fn, signature, constexprs, aligned, num_warps, max_registers=None):
    """Compile ``fn`` for sm_90 with ``aligned`` pointer arguments marked 16-byte aligned (and
    ``maxnreg`` where ``max_registers`` caps the registers, as the runtime launches it)."""
    attrs = {(fn.arg_names.index(a),): [["tt.divisibility", 16]] for a in aligned}
    src = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    options = {"num_warps": num_warps}
    if max_registers is not None:
        options["maxnreg"] = max_registers
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)


_POINTER = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16"}


def _storage(cfg: KernelConfig, dtype: torch.dtype):
    """Pointer type and ``VEC`` of the data as the backend launches them."""
    if cfg.layout == "plain":
        return _POINTER[dtype], 1
    vec = _vector_width(dtype)
    return _POINTER[dtype], min(vec, cfg.group) if cfg.layout == "planar" else vec


def _unit_stride(cfg: KernelConfig, vec: int, name: str):
    """The runtime passes a stride of 1 as a constant (Triton specialises integer arguments
    equal to 1): the planar layout's pixel / ray stride when a plane is one vector."""
    if cfg.layout == "planar" and cfg.group // vec == 1:
        return {name: C}, {name: 1}
    return {}, {}


def forward_kernel(cfg: KernelConfig, dtype: torch.dtype = torch.float32):
    ptr, vec = _storage(cfg, dtype)
    unit_sig, unit = _unit_stride(cfg, vec, "x_pix_q")
    sig = dict(FWD_SIG, x_ptr=ptr, out_ptr=ptr, **unit_sig)
    return compile_sm90(K.joseph_forward_kernel, sig, dict(**unit,
        x_b_stride=1, out_ray_stride=1, VIEW_BLOCK=cfg.view_block, DET_BLOCK=cfg.det_block,
        GROUP=cfg.group, GROUPS=cfg.groups, TRANSPOSED=cfg.transposed, VEC=vec, EVEN_B=True,
        DTYPE=tl.float32, FRAMED=cfg.framed and cfg.transposed,
        PLANAR=cfg.layout == "planar", PAIR_OFFSET=cfg.pair_offset,
        ORDERED=cfg.tile_order != "grid"), FWD_PTRS,
        cfg.num_warps, cfg.forward_max_registers)


def adjoint_kernel(cfg: KernelConfig, dtype: torch.dtype = torch.float32,
                   geom_code: int = K.GEOM_PARALLEL):
    """The adjoint kernel the runtime launches for ``cfg``: the parallel-beam kernel (v3) when
    ``cfg.parallel_adjoint == "affine"`` and the geometry is parallel, else the generic one."""
    ptr, vec = _storage(cfg, dtype)
    unit_sig, unit = _unit_stride(cfg, vec, "y_ray_q")
    if geom_code == K.GEOM_PARALLEL and cfg.parallel_adjoint == "affine":
        return compile_sm90(K.joseph_adjoint_parallel_kernel,
                            dict(PAR_SIG, y_ptr=ptr, out_ptr=ptr, **unit_sig), dict(**unit,
                                y_b_stride=1, out_pix_stride=1, TILE_H=cfg.tile_h,
                                TILE_W=cfg.tile_w, GROUP=cfg.group, GROUPS=cfg.groups, VEC=vec,
                                EVEN_B=True, DTYPE=tl.float32, PLANAR=cfg.layout == "planar",
                                FRAMED=cfg.adjoint_frame),
                            ["y_ptr", "out_ptr", "pview_ptr", "count_ptr"], cfg.num_warps)
    sig = dict(ADJ_SIG, y_ptr=ptr, out_ptr=ptr, **unit_sig)
    return compile_sm90(K.joseph_adjoint_kernel, sig, dict(**unit,
        y_b_stride=1, out_pix_stride=1, TILE_H=cfg.tile_h, TILE_W=cfg.tile_w, GROUP=cfg.group,
        GROUPS=cfg.groups, GEOM=geom_code, PAD=K.CANDIDATE_PAD, VEC=vec, EVEN_B=True,
        DTYPE=tl.float32, COUNT_FROM_TABLE=cfg.adjoint_count == "table",
        PLANAR=cfg.layout == "planar", CLAMPED=cfg.adjoint_frame), ADJ_PTRS, cfg.num_warps)


def innermost_loop(ptx: str) -> list:
    """PTX instructions of the innermost loop: from the label LLVM marks ``This Inner Loop
    Header`` to the branch back to it (blocks laid out after that branch are not counted)."""
    raw = ptx.splitlines()
    header = None
    for i, ln in enumerate(raw):
        if "Inner Loop Header" in ln:
            j = i
            while j > 0 and not re.match(r"^\$L__\w+:", raw[j]):
                j -= 1
            header = re.match(r"^(\$L__\w+):", raw[j]).group(1), j
    if header is None:
        return []
    label, start = header
    for i in range(start + 1, len(raw)):
        if re.search(r"\bbra(\.uni)?\s+" + re.escape(label) + ";", raw[i]):
            body = [x.strip() for x in raw[start + 1:i + 1]]
            body = [x for x in body if x and not x.startswith(("$L", "//", ".", "{", "}"))]
            return [re.sub(r"^@!?%p\d+\s+", "", x) for x in _drop_dead_zeroing(body)]
    return []


def instructions_by_loop_depth(ptx: str) -> dict:
    """PTX instructions per loop depth, from LLVM's block comments (``Loop Header: Depth=d``,
    ``in Loop: Header=... Depth=d``): ``{0: outside loops, 1: ..., 2: ...}``. In the adjoint,
    depth 1 is the per-view work around the candidate loop (depth 2). Dead zeroing moves are
    dropped as in :func:`innermost_loop`."""
    depth, counts, body = 0, {}, []

    def flush():
        counts[depth] = counts.get(depth, 0) + len(_drop_dead_zeroing(body))

    in_func = False
    for ln in ptx.splitlines():
        x = ln.strip()
        if x.startswith(".visible .entry") or x.startswith(".entry"):
            in_func = True
        if not in_func:
            continue
        if re.match(r"^\$L__BB\d+_\d+:", x) or re.match(r"^// %bb\.\d+:", x):
            flush()
            body = []
            m = re.search(r"Depth=(\d+)", x)
            depth = int(m.group(1)) if m else 0
            continue
        if x.startswith("//"):
            m = re.search(r"Depth=(\d+)", x)
            if m and not body:
                depth = int(m.group(1))
            continue
        if x and not x.startswith(("$L", ".", "{", "}", "(", ")")):
            body.append(re.sub(r"^@!?%p\d+\s+", "", x))
    flush()
    return counts


def _drop_dead_zeroing(body: list) -> list:
    """Triton writes ``mov.u32 %r, 0x0`` before every load into ``%r`` (the masked-off value);
    before a load without a predicate that value is dead and ptxas removes it: drop it."""
    dead = set()
    for x in body:
        m = re.match(r"^ld\.global\S*\s+\{?([^}\[]+)\}?\s*,\s*\[", x)
        if m:  # an unpredicated load: its destinations' zeroing is dead
            dead.update(r.strip() for r in m.group(1).split(","))
    return [x for x in body
            if not (re.match(r"^mov\.u32\s+(%r\d+),\s*0x0;", x)
                    and re.match(r"^mov\.u32\s+(%r\d+)", x).group(1) in dead)]


def _on_cubin(kern, tool_name: str, *args: str):
    """Stdout of ``tool_name`` (a binary shipped with Triton's NVIDIA backend: ``cuobjdump``,
    ``nvdisasm``) run on the kernel's cubin, or None where the tool is missing."""
    import os
    import tempfile
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / tool_name
    if not tool.exists() or "cubin" not in kern.asm:
        return None
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(kern.asm["cubin"])
    try:
        return subprocess.run([str(tool), *args, f.name], capture_output=True, text=True,
                              check=True).stdout
    finally:
        os.unlink(f.name)


def registers(kern):
    """Registers per thread of the compiled kernel (``cuobjdump -res-usage``), or None where
    the tool is missing."""
    out = _on_cubin(kern, "cuobjdump", "-res-usage")
    m = re.search(r"REG:(\d+)", out or "")
    return int(m.group(1)) if m else None


def sass(kern):
    """The machine code (SASS) of the compiled kernel (``nvdisasm``), or None where the tool
    is missing."""
    return _on_cubin(kern, "nvdisasm", "-c")


_SASS_INSTR = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(.*?)\s*;")
_REG = re.compile(r"\bR(\d+)\b")


def sass_loop(text: str) -> list:
    """The instructions of the longest loop of a SASS listing: from a label to the last
    branch back to it (the forward kernel's step loop; ptxas may have unrolled it)."""
    lines = text.splitlines()
    labels, best = {}, None
    for i, ln in enumerate(lines):
        m = re.match(r"^(\.L_x_\d+):", ln)
        if m:
            labels[m.group(1)] = i
        m = re.search(r"BRA `\((\.L_x_\d+)\)", ln)
        if m and m.group(1) in labels:  # a branch back to a label above: a loop
            start = labels[m.group(1)]
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)
    if best is None:
        return []
    out = []
    for ln in lines[best[0]:best[1] + 1]:
        m = _SASS_INSTR.match(ln)
        if m:
            out.append(m.group(1))
    return out


def load_rounds(loop: list) -> int:
    """Rounds of global loads in a SASS loop body: a round is the loads issued before any of
    them is used; the first instruction that reads a register one of them wrote waits for
    the memory system, so a load issued after it starts the next round (each round costs a
    memory latency, an L1 hit or more, per iteration)."""
    rounds, pending, used = 0, set(), False
    for ins in loop:
        op, _, operands = re.sub(r"^@!?U?P\w+\s+", "", ins).partition(" ")
        if op.startswith("LDG"):
            if used or not pending:
                rounds += 1
                pending, used = set(), False
            first = int(_REG.search(operands).group(1))
            width = 4 if ".128" in op else 2 if ".64" in op else 1  # registers written
            pending |= set(range(first, first + width))
        elif pending and not used:
            sources = operands.split(",", 1)[1] if "," in operands else operands
            if {int(r) for r in _REG.findall(sources)} & pending:
                used = True
    return rounds


def sass_report(kern):
    """Per step of the forward's loop, from its machine code: instructions and load rounds
    (:func:`load_rounds`), divided by ptxas's unrolling (the loop's loads in SASS over those of
    one step in PTX). None where ``nvdisasm`` is missing."""
    text = sass(kern)
    if text is None:
        return None
    loop = sass_loop(text)
    per_step = sum(x.startswith("ld.global") for x in innermost_loop(kern.asm["ptx"]))
    unroll = max(1, sum(re.search(r"\bLDG", ins) is not None for ins in loop) // max(1, per_step))
    return {"sass instr / step": len(loop) / unroll,
            "load rounds / step": load_rounds(loop) / unroll}


def report(kern, images_per_thread: int) -> dict:
    ptx = kern.asm["ptx"]
    loop = innermost_loop(ptx)
    barrier = re.compile(r"^(bar\.sync|barrier\.sync|bar\.warp\.sync)")
    return {
        "barriers in loop": sum(bool(barrier.match(x)) for x in loop),
        "shared in loop": sum(x.startswith(("ld.shared", "st.shared")) for x in loop),
        "ld.v4 in loop": sum(bool(re.match(r"ld\.global[.\w]*\.v4", x)) for x in loop),
        "f64 in loop": sum(bool(re.search(r"\.f64\b", x)) for x in loop),
        "loop instr": len(loop),
        "outer instr": (instructions_by_loop_depth(ptx).get(1, 0)
                        if "Depth=2" in ptx else 0),
        "instr / image": len(loop) / images_per_thread,
        "registers": registers(kern),
    }


def images_per_thread(cfg: KernelConfig, lanes: int) -> float:
    """Images one thread serves per loop iteration: the program's (lane, image) pairs over
    its threads, when every thread holds distinct pairs."""
    return lanes * cfg.b_block / (32 * cfg.num_warps)


def _cells(fwd, adj, cfg: KernelConfig) -> list:
    """The table's counts for one launch: per loop, barriers, shared accesses, float64 and all
    instructions and instructions per image; for the adjoint also the per-view work around the
    candidate loop and the instructions per gathered image with it included, at 2 candidates
    per pixel and view (the parallel benchmark cases)."""
    cells = []
    for kern, lanes, adjoint in ((fwd, cfg.view_block * cfg.det_block, False),
                                 (adj, cfg.tile_h * cfg.tile_w, True)):
        images = images_per_thread(cfg, lanes)
        r = report(kern, images)
        cells += [r["registers"], r["barriers in loop"], r["shared in loop"], r["f64 in loop"],
                  r["loop instr"], f"{r['instr / image']:.1f}"]
        if not adjoint:
            m = sass_report(kern)
            cells += (["-", "-"] if m is None else
                      [f"{m['sass instr / step']:g}", f"{m['load rounds / step']:g}"])
        else:
            cells += [r["outer instr"],
                      f"{(2 * r['loop instr'] + r['outer instr']) / (2 * images):.1f}"]
    return cells


def rows(batches=(1, 2, 4, 8, 16, 32)):
    for dtype in (torch.float32, torch.bfloat16):
        for batch in batches:
            default = KernelConfig.default(batch, dtype)
            versions = [("v1 launch", KernelConfig.v1(batch)),
                        ("v3", KernelConfig.v3(batch, dtype))]
            if default.layout == "planar":  # v4 and v5 differ in the forward's addressing
                versions += [("v4", default.replace(pair_offset=False)),
                             ("v5", default.replace(pair_offset=True))]
                if default.groups == 4 and dtype == torch.float32:  # v5 at v4's registers
                    versions.append(("v5, 64 registers", default.replace(
                        pair_offset=True, forward_max_registers=64)))
            else:
                versions.append(("v4", default))
            versions = [(name + " (default)" if cfg == default else name, cfg)
                        for name, cfg in versions]
            for version, cfg in versions:
                cells = _cells(forward_kernel(cfg, dtype), adjoint_kernel(cfg, dtype), cfg)
                yield [str(dtype).split(".")[-1], batch, version, cfg.layout,
                       f"{cfg.b_block}/{cfg.group}"] + cells


#: The kernels that ran on the H200 on 2026-11-26 (v1, KERNELS.md "v1 measured").
V1_COMMIT = "73289c7"


def v1_as_run_kernels(batch: int, geom_code: int = K.GEOM_PARALLEL,
                      commit: str = V1_COMMIT):
    """v1's float32 forward and adjoint kernels as they ran on the H200: the source of
    ``commit`` (read with ``git show``) compiled with v1's own signature and launch for
    ``batch``. Returns ``(forward, adjoint, config)``."""
    import importlib.util
    import tempfile
    source = subprocess.run(["git", "show", f"{commit}:operators/backends/triton_kernels.py"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"triton_kernels_{commit}.py"
        path.write_text(source)  # Triton reads the kernels' source from their file
        spec = importlib.util.spec_from_file_location(path.stem, path)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        fwd_sig = {k: v for k, v in FWD_SIG.items() if k not in (
            "GROUP", "GROUPS", "FRAMED", "PLANAR", "x_plane_q", "PAIR_OFFSET", "order_ptr",
            "ORDERED")}
        adj_sig = {k: v for k, v in ADJ_SIG.items() if k not in (
            "count_ptr", "count_v_stride", "count_t_stride", "GROUP", "GROUPS",
            "COUNT_FROM_TABLE", "PLANAR", "y_plane_q", "CLAMPED")}
        cfg = KernelConfig.v1(batch)
        fwd = compile_sm90(old.joseph_forward_kernel, dict(fwd_sig, B_BLOCK=C), dict(
            x_b_stride=1, out_ray_stride=1, VIEW_BLOCK=cfg.view_block,
            DET_BLOCK=cfg.det_block, B_BLOCK=cfg.b_block, TRANSPOSED=True, VEC=4,
            EVEN_B=True, DTYPE=tl.float32), FWD_PTRS, cfg.num_warps)
        adj = compile_sm90(old.joseph_adjoint_kernel, dict(adj_sig, B_BLOCK=C), dict(
            y_b_stride=1, out_pix_stride=1, TILE_H=cfg.tile_h, TILE_W=cfg.tile_w,
            B_BLOCK=cfg.b_block, GEOM=geom_code, PAD=K.CANDIDATE_PAD, VEC=4,
            EVEN_B=True, DTYPE=tl.float32), [p for p in ADJ_PTRS if p != "count_ptr"],
            cfg.num_warps)
    return fwd, adj, cfg


def v1_as_run_rows(commit: str = V1_COMMIT, batches=(8, 32)):
    """The same counts for the float32 kernels of ``commit`` (v1's source, read with ``git
    show``), compiled with v1's own signature and launch: the baseline the README quotes."""
    for batch in batches:
        fwd, adj, cfg = v1_as_run_kernels(batch, commit=commit)
        yield ["float32", batch, f"v1 as run ({commit})", cfg.layout,
               f"{cfg.b_block}/{cfg.group}"] + _cells(fwd, adj, cfg)


def main(argv=None) -> int:
    """Print the table. "v1 as run" is the source that ran on the H200 (needs a git checkout);
    "v1 launch" is v1's tiles, masks and candidate count compiled from the current code (its
    arithmetic is the current one); "v3" v3's launch (``KernelConfig.v3``); "v4" and "v5" the
    planar launch with the forward's two pair addressings (``pair_offset``); "(default)" marks
    what the backend launches."""
    parse_args(argv)
    head = ["dtype", "batch", "config", "layout", "b_block/group"] + [
        f"{k} {m}" for k in ("fwd", "adj")
        for m in ("regs", "barriers", "shared", "f64", "instr", "instr/image")] + [
        "adj per-view instr", "adj instr/image with per-view (2 cand.)"]
    head[11:11] = ["fwd SASS instr/step", "fwd load rounds/step"]
    print("Innermost loop of each kernel, compiled for sm_90 (no GPU), triton "
          f"{triton.__version__}:\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    try:
        baseline = list(v1_as_run_rows())
    except (OSError, subprocess.CalledProcessError) as exc:  # no git checkout
        baseline = []
        print(f"(v1 as run: not available here: {exc})")
    for row in baseline + list(rows()):
        print("| " + " | ".join(str(c) for c in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
