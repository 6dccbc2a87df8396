"""Sample processes the service-manager tests run on lab hosts."""
