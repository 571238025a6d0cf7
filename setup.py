"""Leadflow: packages pipelines, transforms, scoring and schemas for Dataflow workers and ``pip install -e .``.

Dependencies are pinned in requirements.lock (resolved in one run from requirements.in); the
``install_requires`` here are the ranges workers need, so ``--setup_file`` builds stay light.
"""

import setuptools

setuptools.setup(
    name="leadflow",
    version="0.1.0",
    description="Streaming lead-processing pipeline on Apache Beam",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["pipelines*", "transforms*", "scoring*", "schemas*", "infra*"]),
    package_data={
        "transforms.reference_data": ["*.csv"],
        "pipelines.synthetic.samples": ["*.jsonl", "*.json"],
        "schemas": ["*.sql", "views/*.sql"],
    },
    include_package_data=True,
    install_requires=[
        "apache-beam[gcp]==2.77.0",
        "phonenumbers>=8.13",
        "email-validator>=2.1",
        "jsonschema>=4.20",
        "pyarrow>=14",
        "pytz",
        "disposable-email-domains",
        "zipcodes>=3",  # enrichment: US ZIP geography
        "google-cloud-bigquery",  # --reference_data=bq://...
        "requests>=2.31",  # the BentoML scorer client (--scorer=bentoml)
        "numpy",
        "lightgbm>=4",  # --scorer=inprocess (with bentoml for the model store)
    ],
    extras_require={"inprocess": ["bentoml==1.4.39"]},
    entry_points={"console_scripts": ["leadflow=pipelines.cli:main"]},
)
