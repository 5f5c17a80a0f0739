"""What every entry point shares: clean error exits."""
import sys
import traceback

from src.engine.checkpoint import CheckpointError


def run_main(main, argv=None):
    """Run ``main(argv)``; expected failures print ``error: ...`` and exit
    non-zero without a traceback (set MS_ZOO_TRACEBACK=1 to see one)."""
    import os
    from src.config import ConfigError
    from src.engine.trainer import TrainingDiverged
    expected = (ConfigError, CheckpointError, FileNotFoundError, ValueError, TrainingDiverged)
    try:
        return main(argv)
    except expected as exc:
        if os.environ.get("MS_ZOO_TRACEBACK"):
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1 if isinstance(exc, TrainingDiverged) else 2)
    except KeyboardInterrupt:
        print("interrupted; the newest periodic checkpoint in output_path can be resumed "
              "with --resume True", file=sys.stderr, flush=True)
        sys.exit(130)
