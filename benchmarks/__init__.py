"""edgecodec.benchmarks."""
