"""The Ray driver: the sweep parsed once, the Trainable, grid and adaptive modes, the planner, fault repair, presets."""
