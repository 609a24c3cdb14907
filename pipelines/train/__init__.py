"""Training the classifier: export the encoder, embed, fit calibrated heads, measure (`metrics`, the
one ECE in `calibration`), write the ONNX bundle, and the register step shared with the gate; the
static fast-path encoder (`static_encoder`) and two-stage bundles (`two_stage`).
"""
