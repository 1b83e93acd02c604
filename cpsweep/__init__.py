"""cpsweep: sweeps of deficit-window trials for critical learning periods in deep networks."""

__version__ = "0.1.0"
