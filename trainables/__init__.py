"""What one trial runs: data, models, episodes, the meta step, evaluation."""
