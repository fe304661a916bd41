"""Entrypoint: ``python -m slices.paper_trade``."""
from .cli import cli

if __name__ == "__main__":
    cli(prog_name="python -m slices.paper_trade")
