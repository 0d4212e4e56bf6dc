"""Knowing before: the plan that compares two rule sets' forecasts (`automator.simulate`
makes a forecast)."""
