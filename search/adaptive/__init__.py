"""An adaptive sweep: the budget schedule (schedule.py), the decision after each rung (rule.py), the driver that
runs the rungs (driver.py)."""
