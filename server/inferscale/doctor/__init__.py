"""`inferscale doctor`: walks the autoscaling pipeline of one release, in the
order data flows through it, and stops at the first broken link.

    pods ready -> ServiceMonitor selected by a Prometheus -> targets up ->
    request-duration series -> the adapter rule's value per pod -> the
    custom (or external) metrics API -> the HPA -> the release's alerts

It reads everything through the API server (Prometheus through the API
server's service proxy), so a kubeconfig is all it needs.
"""
