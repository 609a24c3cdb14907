"""Training the classifier: export the encoder, embed, fit calibrated heads, measure (`metrics`, the
one ECE in `calibration`), write the ONNX bundle, and the register step shared with the gate.
"""
