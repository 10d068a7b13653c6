"""Tools around the library: gradient checks, the profiler, scaling sweeps, plots, statistics.

tutorial.py holds the notebooks' shared runs (the shipped models).
"""
