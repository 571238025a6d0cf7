"""The lead-operations dashboard: a web page over the BigQuery views (``leadflow dashboard``, default port 8050) and
the same page as one self-contained file (``leadflow report --out report.html``).

A service beside the job, like the gateway: it reads BigQuery through ``schemas.bigquery`` only (the emulator when
``BIGQUERY_EMULATOR_HOST`` is set, else real BigQuery with application-default credentials) and never imports the
job, the stages or the local stack. ``panels`` holds each chart's question and SQL, ``data`` runs them with the
filters, ``render`` draws the page (Vega-Lite to SVG on the server), ``server`` serves it.
"""
