"""`tierroute eval`: score a model on a labelled set (`run`, `evaluate`), routing value (`routing_value`),
and the eval-set checks `promote --eval-set` runs (`promotion`).
"""
