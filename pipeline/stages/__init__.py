"""The steps that make a sample: teacher (+ cache), mesh, scene, scan, sample."""
