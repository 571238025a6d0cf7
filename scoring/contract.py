"""The scorer service's contract, shared by the service (``scoring.service``) and its client (``scoring.handlers``):
the environment variables the service reads. Import-light: the Beam workers' client must not load BentoML."""

MODEL_ENV = "LEADFLOW_SCORER_MODEL"  # the model tag to serve (default scoring.model_store.LATEST)
TOKEN_ENV = "LEADFLOW_SCORER_TOKEN"  # the bearer token callers must present (and the client sends)
