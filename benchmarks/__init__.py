"""Benchmarks behind `scripts/benchmark.py`: training-step, input-pipeline, fine-tuning and
serving throughput, one module per sub-command, plus `profiles` and `report`.

Each `bench_<name>(...)` is a generator of records (plain dicts), one per measurement;
`scripts/benchmark.py` prints each as a JSON line merged with `environment()` (host, CPU, load
average, backend, devices). Timings are steady state: compilation and warm-up steps run before
the clock starts, and the device is synchronised (`jax.block_until_ready`) before it stops.
Peers (sentence-transformers) run in the same process on the same data, so a ratio compares
like with like on one machine at one load.
"""
