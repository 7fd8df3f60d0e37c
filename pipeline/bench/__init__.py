"""Benchmarks that print figures: one frame's stages, scaling on Ray, teacher timing."""
