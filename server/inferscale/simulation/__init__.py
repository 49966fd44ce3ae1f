"""`inferscale simulate`: the autoscaling loop as a discrete-event model (loop.py)
with the HPA controller's own arithmetic (hpa.py), and the figures it is judged by."""
