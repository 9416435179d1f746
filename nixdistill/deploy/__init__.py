"""Everything a trained student needs to run and ship: the exported ``student.safetensors``,
its runtime (PyTorch and ONNX Runtime, streaming), and the ONNX, int8 and Piper exports.

Nothing here imports :mod:`nixdistill.distill`: a deployed student runs without training code.
"""
