"""Entry point: ``python -m slices.analyze``."""

from slices.analyze.cli import main

if __name__ == "__main__":
    main()
