"""Checks of the deployment files in deploy/ (compose, Kubernetes, NATS, settings examples)."""
