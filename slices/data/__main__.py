"""Entrypoint: ``python -m slices.data``."""

from slices.data.cli import main

if __name__ == "__main__":
    main()
