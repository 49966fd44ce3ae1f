"""`inferscale simulate`: the autoscaling loop as a discrete-event model (loop.py)
with the HPA controller's own arithmetic (hpa.py), and the figures it is judged by."""

# Here, not in scenarios.py: the CLI offers them as choices when it builds its
# parser, and every `inferscale serve` would otherwise import the whole model.
SCENARIOS = ("step", "ramp", "spike", "sine", "stop")
