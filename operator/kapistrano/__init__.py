"""kapistrano: Capistrano-style SSH deploys with safe rolling restarts, as a Kubernetes operator."""

__version__ = "0.1.0"
