"""The engine's own failures, importable without MindSpore (the entry
points' error handling, src/engine/cli.py, needs them before anything heavy
is loaded)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for the requested network."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN, infinite or far above its early level, or a weight
    stopped being finite."""
