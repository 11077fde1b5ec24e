"""The seeded workload behind the demo, the tests and the benchmarks."""
