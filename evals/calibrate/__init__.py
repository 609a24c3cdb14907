"""`tierroute calibrate`: choose the routing threshold for a target share, quality floor or budget
(`thresholds`) and store it on the version and in a bundle copy (`run`).
"""
