"""analyze slice: indicators, regimes, risk and market reports (see README.md).

Self-contained: reads bars through the bar-store contract of SLICES.md with its own loader,
and imports no other slice.
"""
