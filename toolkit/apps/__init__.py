"""The applications on top of the toolkit: the CLI, the pipeline, training, distillation and evaluation.

Only this layer orchestrates the others (export, quantize, runtimes, benchmarks); nothing below
imports it (tests/test_layers.py checks the direction)."""
