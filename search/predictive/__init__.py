"""The predictive search: a model of the map (map_model), the prior from side information, the choice of runs."""
