"""The ingestion gateway: the front door that takes leads the way each provider sends them.

A FastAPI service (``leadflow gateway --host H --port P``) beside the job, like the scorer. Each endpoint checks
its provider's documented verification (a signature, a token or an API key), then publishes the request body byte
for byte to the pipeline's input topic with the attributes the pipeline reads (``provider``, ``received_at``,
``gateway_request_id``, ``client_id``), and answers 2xx only after Pub/Sub confirmed the publish (503 otherwise, so
the provider retries). docs/gateway.md lists the endpoints, the verification per provider and the settings.

The gateway loads only the records (``schemas``) and the pure parser modules whose knowledge it shares with the
pipeline (provider names, the API's lead schema); never Beam, the job or the local stack (lint-imports).
"""
