"""Training side of the response-acceptability gate: its dataset (`data`), training (`train`), ONNX
bundle (`export`) and latency benchmark (`bench`). Runtime checks live in `serving.gate`.
"""
