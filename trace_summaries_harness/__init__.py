"""The development harness: real local engines and fault-injecting fakes that tests and benchmarks start."""
