"""Entrypoint: ``python -m slices.live_trade``."""
from .cli import cli

if __name__ == "__main__":
    cli(prog_name="python -m slices.live_trade")
