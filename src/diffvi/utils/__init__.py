"""Small helpers shared across the library (devices, seeds, numerics, progress bars)."""
