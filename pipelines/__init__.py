"""The training side: data, the classifier and the gate's training, benchmarks, the MLflow registry
and their commands. May import `serving` (to train on exactly what serves), never `evals`.
"""
