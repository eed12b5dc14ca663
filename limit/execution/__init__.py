"""Running steps: the artifact store and its leases, locations, files, progress, MLflow, a step's context."""
