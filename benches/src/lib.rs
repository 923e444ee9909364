//! Benchmark harness helpers; the runnable benchmarks live in `src/bin/`.
