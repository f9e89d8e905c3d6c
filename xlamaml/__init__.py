"""xlamaml: cross-lingual meta-learning (XLA-MAML) with a Ray Tune search over language assignments."""
