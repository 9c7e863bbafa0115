"""The fault suite's scenarios (`bench/faults.py` registers and runs them)."""
