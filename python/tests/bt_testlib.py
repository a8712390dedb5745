"""What the package's tests share."""
import os

import blindtuner as bt


def find_cli():
    """The `blindtuner` command: $BLINDTUNER_CLI, else the one next to the library, else None."""
    cli = os.environ.get("BLINDTUNER_CLI")
    if cli:
        return cli
    near = os.path.join(os.path.dirname(os.path.realpath(bt.library_path())), "blindtuner")
    return near if os.access(near, os.X_OK) else None
