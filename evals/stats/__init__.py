"""Statistics the evals share: bootstrap intervals and paired differences (`bootstrap`), shift tests
and multiple-test corrections (`shift_tests`), the ECE interval (`calibration`).
"""
