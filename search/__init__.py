"""The search over languages and hyper-parameters: config space, presets, the Tuner, the command line."""
