"""inferscale: an inference server that Kubernetes autoscales on inference duration."""

__version__ = "0.1.0"
