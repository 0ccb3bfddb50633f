#!/usr/bin/env bash
# One device session in one call: the Triton tests on the GPU, the benchmark against every
# peer, then the sanitizer and torch.compile checks; results under OUTDIR. Run from the
# repository root on the GPU machine, with the peers' wheels in .whl/ (benchmarks/PEERS.md; the
# device tool must carry .whl):
#
#     bash benchmarks/gpu_session.sh "$OUT"
#
# The steps, most important first, each with its own time limit, so that a call cut at the
# device tool's limit (10 minutes) loses only the last ones; everything is written as it goes:
#   1. pytest of the Triton backend on the GPU       <= TEST_TIMEOUT (180 s; the sm_90 compile
#      checks are left to CI, they need no GPU; the slow random cases are included: seconds here)
#   2. benchmark, every variant and peer              <= BENCH_TIMEOUT (300 s; after --budget-s,
#      200 s, only our default kernels still run; extra arguments in BENCH_ARGS, e.g.
#      BENCH_ARGS="--cases P512")
#   2b. host time of an eager call, piece by piece   <= PROFILE_TIMEOUT (90 s)
#   3. memcheck of every launch, small sizes          <= MEMCHECK_TIMEOUT (200 s: 75 s covered
#      69 of its cases on the H100; MEMCHECK=0 skips)
#   4. torch.compile around the kernels (Inductor, CUDA graphs with mode="reduce-overhead")
#                                                     <= COMPILE_TIMEOUT (60 s)
#   5. racecheck of v1's batch-8 launch               <= 45 s (RACECHECK=0 skips it;
#      RACECHECK_LAUNCHES="v1 default" adds v4's)
# On the H100 (2026-11-27) steps 1, 2, 4 and 5 took about 1, 2, 0.5 and 0.3 minutes; with
# memcheck's full 200 s about 7.5 minutes in all; step 2b and the graph-tuned benchmark variant
# came later (not run yet: estimated well under a minute each, the variant within the
# benchmark's --budget-s). The limits add up to more, by design.
set -u
OUT_DIR=${1:?usage: bash benchmarks/gpu_session.sh OUTDIR}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || echo "wheel install failed: peers will be absent"
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
{ date -u; git rev-parse HEAD 2>/dev/null; nvidia-smi 2>&1 | head -15; } > "$OUT_DIR/machine.txt"

# 1. correctness on the GPU
timeout "${TEST_TIMEOUT:-180}" "$PY" -m pytest -q -rA -s -p no:cacheprovider -m "" \
    -k "not compile_for_the_gpu and not issues_fewer and not synchronises and not read_8_images" \
    tests/operators/test_triton_backend.py > "$OUT_DIR/pytest_triton.txt" 2>&1
echo "pytest (triton, on the GPU) rc $?: $(tail -n 1 "$OUT_DIR/pytest_triton.txt")"
grep -h "P512 adjoint relative errors" "$OUT_DIR/pytest_triton.txt"

# 2. the benchmark
timeout "${BENCH_TIMEOUT:-300}" "$PY" benchmarks/gpu_bench.py --out "$OUT_DIR/bench" \
    --budget-s "${BUDGET_S:-200}" ${BENCH_ARGS:-} > "$OUT_DIR/gpu_bench.log" 2>&1
echo "benchmark rc $?"
grep -E "^(=== |  ours|  torchtomo|  deepinv|  diffct)" "$OUT_DIR/gpu_bench.log" | cut -c1-150
grep -A 9 "^## Summary" "$OUT_DIR/bench/gpu_bench.md" 2>/dev/null | cut -c1-400
grep "^autotuned" "$OUT_DIR/bench/gpu_bench.md" 2>/dev/null | cut -c1-200
grep "^back to back" "$OUT_DIR/bench/gpu_bench.md" 2>/dev/null | cut -c1-400

# 2b. the host's share of an eager call, piece by piece (prepared launches, 2026-11-27)
timeout "${PROFILE_TIMEOUT:-90}" "$PY" benchmarks/gpu_call_profile.py \
    > "$OUT_DIR/gpu_call_profile.txt" 2>&1
echo "call profile rc $?"
grep -E "^\| (P256|P128s) " "$OUT_DIR/gpu_call_profile.txt" | cut -c1-150

# 3. out-of-bounds accesses of the unmasked loads (framed, clamped, planar padding)
if [ "${MEMCHECK:-1}" != 0 ] && command -v compute-sanitizer >/dev/null 2>&1; then
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "${MEMCHECK_TIMEOUT:-200}" compute-sanitizer \
        --tool memcheck "$PY" benchmarks/memcheck_kernels.py > "$OUT_DIR/memcheck.txt" 2>&1
    echo "memcheck rc $?: $(grep -E 'ERROR SUMMARY|launches on' "$OUT_DIR/memcheck.txt" \
        | tr '\n' ' ' | cut -c1-300)"
fi

# 4. torch.compile around the kernels
timeout "${COMPILE_TIMEOUT:-60}" "$PY" -m pytest -q -rA -p no:cacheprovider \
    tests/operators/test_compile.py -k on_the_gpu > "$OUT_DIR/pytest_compile.txt" 2>&1
echo "pytest (torch.compile on the GPU) rc $?: $(tail -n 1 "$OUT_DIR/pytest_compile.txt")"

# 5. the race detector on the batch-8 launches (v1's had shared-memory traffic in its loops)
if [ "${RACECHECK:-1}" != 0 ] && command -v compute-sanitizer >/dev/null 2>&1; then
    for launch in ${RACECHECK_LAUNCHES:-v1}; do
        timeout 45 compute-sanitizer --tool racecheck --racecheck-report hazard \
            "$PY" benchmarks/racecheck_batch8.py "$launch" > "$OUT_DIR/racecheck_$launch.txt" 2>&1
        echo "racecheck $launch rc $?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|forward' \
            "$OUT_DIR/racecheck_$launch.txt" | tr '\n' ' ' | cut -c1-300)"
    done
fi
