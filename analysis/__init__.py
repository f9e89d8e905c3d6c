"""Experiment directory -> tidy tables, the Figure-2 heatmap, paper-style tables, best pairs."""
