"""Developer tools: the demo, benchmarks, the soak."""
