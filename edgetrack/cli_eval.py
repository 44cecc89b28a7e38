"""CLI commands of this area; ``register(app)`` adds them to the ``edgetrack`` app."""
import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
