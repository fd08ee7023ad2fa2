"""hwpart: partition a PyTorch model across CPU, GPU and FPGA and run it as a pipeline."""

__version__ = "0.1.0"
