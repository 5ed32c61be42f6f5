"""Edge students: a small decoder distilled from a teacher of the DiffO family that reads the teacher's
streams (its encoder side, codebooks and prior are the teacher's)."""

from .model import CONFIG, CONFIGS, MODEL, PRESETS, EdgeConfig, EdgeStudent, student_of

__all__ = ["CONFIG", "CONFIGS", "MODEL", "PRESETS", "EdgeConfig", "EdgeStudent", "student_of"]
