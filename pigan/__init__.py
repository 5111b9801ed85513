"""pigan-kernels: fused kernels and a drop-in PyTorch model for pi-GAN and its descendants."""
__version__ = "0.1.0"
