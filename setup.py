"""Leadflow: the job's packages for Dataflow workers (``--setup_file``), and ``pip install -e .`` for developers.

Workers get the floors the job runs on: ``schemas``, ``scoring``, ``transforms``, ``pipelines`` (the job and the
operator tools); ``gateway``, the ingestion gateway, is a service deployed beside the job (its dependencies are the
``gateway`` extra; the job never imports it); so is ``dashboard``, the lead-operations dashboard (its extra too).
The local stack (``infra.local``: emulators, DirectRunner speed-ups), the deployment tools (``infra.deploy``),
synthetic data with the bundled sample (``pipelines.synthetic``) and the developer tools (``pipelines.dev``) stay
out of the distribution: they run from the repository checkout, where the editable install maps the top-level
packages to their folders (so ``leadflow local``, ``leadflow demo`` work there).

Dependencies are pinned in requirements.lock (resolved in one run from requirements.in); the
``install_requires`` here are the ranges workers need, so ``--setup_file`` builds stay light.
"""

import setuptools

LOCAL_ONLY = ["infra.local", "infra.local.*", "infra.deploy", "infra.deploy.*", "pipelines.dev", "pipelines.dev.*",
              "pipelines.synthetic", "pipelines.synthetic.*"]

setuptools.setup(
    name="leadflow",
    version="0.1.0",
    description="Streaming lead-processing pipeline on Apache Beam",
    python_requires=">=3.11,<3.12",
    # "infra" itself (empty) stays listed: the editable install maps top-level packages to their folders
    packages=setuptools.find_packages(
        include=["pipelines*", "transforms*", "scoring*", "schemas*", "gateway*", "dashboard*", "infra"],
        exclude=LOCAL_ONLY),
    package_data={
        "transforms.reference_data": ["*.csv"],
        "schemas": ["views/*.sql"],
    },
    include_package_data=False,  # True would ship the left-out subpackages as data of their parents
    install_requires=[
        "apache-beam[gcp]==2.77.0",
        "phonenumbers>=8.13",
        "email-validator>=2.1",
        "jsonschema>=4.20",
        "pyarrow>=14",
        "pytz",
        "disposable-email-domains",
        "lxml>=5",  # the e-mail parser's HTML tokenizer (linear time on hostile markup)
        "zipcodes>=3",  # enrichment: US ZIP geography
        "google-cloud-bigquery",  # --reference_data=bq://...
        "requests>=2.31",  # the BentoML scorer client (--scorer=bentoml)
        "numpy",
        "lightgbm>=4",  # --scorer=inprocess (with bentoml for the model store)
    ],
    extras_require={
        "inprocess": ["bentoml==1.4.39"],
        "gateway": ["fastapi", "uvicorn", "httpx", "python-multipart", "twilio", "limits", "openpyxl", "aiosmtpd",
                    "google-cloud-pubsub"],
        "dashboard": ["fastapi", "uvicorn", "vl-convert-python"],  # the lead-operations dashboard (dashboard/)
    },
    entry_points={"console_scripts": ["leadflow=pipelines.cli:main"]},
)
