"""What a sweep will run, counted before it runs (counts.py), and `xlamaml plan` (planner.py)."""
