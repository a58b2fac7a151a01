"""The export stage: the trained model as ONNX, for use outside PyTorch."""
