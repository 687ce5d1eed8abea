"""What tests and benchmarks share: one server launcher, ports, paths, speech helpers, engine fakes."""
