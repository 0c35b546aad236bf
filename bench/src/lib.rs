//! Shared pieces of the mailvault benchmarks (see bench/README.md).
