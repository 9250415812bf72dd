"""kdviz: see knowledge distillation."""
__version__ = "0.1.0"
