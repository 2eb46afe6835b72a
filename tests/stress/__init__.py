"""Stress runs by hand (rates, not verdicts): not collected by pytest."""
