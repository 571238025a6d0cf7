# Leadflow: `make demo` runs the pipeline on the bundled sample; `make test` runs every test.
# Each target creates .venv at the repository root from requirements.lock when it is missing or stale.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
export BENTOML_DO_NOT_TRACK := true
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install demo test test-fast lint bench lock clean

install: $(STAMP)

$(STAMP): requirements.lock setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

demo: $(STAMP)
	$(BIN)/python -m pipelines.dev.demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow and not e2e and not fuzz"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/ruff format --check . || true

# Bounded throughput and memory beside the plain-loop reference, streaming latency on the local stack,
# and the scorer over HTTP beside the in-process model.
bench: $(STAMP)
	$(BIN)/python -m pipelines.dev.bench $(BENCH_ARGS)

# Re-resolve every dependency together (one resolver run) after editing requirements.in.
lock:
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/pip install -q uv==$(UV_VERSION); }
	$(BIN)/uv pip compile -q requirements.in -o requirements.lock --python-version 3.11 --custom-compile-command "make lock"

clean:
	rm -rf $(VENV) out .bench .pytest_cache .ruff_cache .hypothesis

# ---------------------------------------------------------------------------------------------------------------
# Production on GCP (docs/runbook.md). The offline targets run here; the others need a real project, gcloud
# (authenticated), Terraform, and Docker for the scorer image. Variables:
#   PROJECT          GCP project id                                       (required by the gcloud targets)
#   REGION           region of the job, bucket and images                 (default us-central1)
#   BUCKET           the job's bucket: `terraform output -raw bucket`     (required by flex-template-*)
#   IMAGE            launcher image, e.g. $(REGION)-docker.pkg.dev/$(PROJECT)/leadflow/launcher:TAG
#   SCORER_IMAGE     scorer image,   e.g. $(REGION)-docker.pkg.dev/$(PROJECT)/leadflow/lead_scorer:TAG
#   JOB              Dataflow job name (default leadflow; --update replaces the running job of this name)
#   PARAMETERS       pipeline parameters (default: `terraform output -raw pipeline_parameters`)
#   SERVICE_ACCOUNT  job service account (default: `terraform output -raw dataflow_service_account`)
#   RUN_FLAGS        extra `gcloud dataflow flex-template run` flags, e.g. --max-workers=20 --disable-public-ips
#                    --subnetwork=regions/$(REGION)/subnetworks/NAME
#   NAME_MAPPING     flex-template-update: old=new transform names (comma-separated) when a stateful step was renamed
REGION ?= us-central1
JOB ?= leadflow
TEMPLATE = gs://$(BUCKET)/templates/leadflow.json
TF = terraform -chdir=infra/deploy/terraform
PARAMETERS ?= $(shell $(TF) output -raw pipeline_parameters 2>/dev/null)
SERVICE_ACCOUNT ?= $(shell $(TF) output -raw dataflow_service_account 2>/dev/null)
require = @test -n "$($(1))" || { echo "error: set $(1)=... (see the variables above and docs/runbook.md)"; exit 2; }

.PHONY: terraform-gen flex-template-metadata stateful-steps deploy-check terraform-apply flex-template-image \
	flex-template-build flex-template-run flex-template-update scorer-bento scorer-image

# Offline: regenerate what is derived from the code (commit the results).
terraform-gen: $(STAMP)
	$(BIN)/python -m infra.deploy.terraform_gen

flex-template-metadata: $(STAMP)
	$(BIN)/python -m infra.deploy.dataflow.metadata

stateful-steps: $(STAMP)
	$(BIN)/python -m infra.deploy.dataflow.graph --regen

# Offline: the generated files are current and the production graph's stateful steps are the pinned ones.
deploy-check: $(STAMP)
	$(BIN)/python -m infra.deploy.terraform_gen --check
	$(BIN)/python -m infra.deploy.dataflow.metadata --check
	$(BIN)/python -m infra.deploy.dataflow.graph --check

terraform-apply: deploy-check
	$(call require,PROJECT)
	$(call require,SCORER_IMAGE)
	$(TF) init
	$(TF) apply -var project=$(PROJECT) -var region=$(REGION) -var scorer_image=$(SCORER_IMAGE)

# The launcher image, built by Cloud Build from infra/deploy/dataflow/Dockerfile (no local Docker needed).
flex-template-image: deploy-check
	$(call require,PROJECT)
	$(call require,IMAGE)
	gcloud builds submit --project $(PROJECT) --region $(REGION) --config infra/deploy/dataflow/cloudbuild.yaml \
		--substitutions _IMAGE=$(IMAGE) .

# The template spec (image + parameter metadata) at gs://$(BUCKET)/templates/leadflow.json.
flex-template-build: deploy-check
	$(call require,PROJECT)
	$(call require,BUCKET)
	$(call require,IMAGE)
	gcloud dataflow flex-template build $(TEMPLATE) --project $(PROJECT) --image $(IMAGE) --sdk-language PYTHON \
		--metadata-file infra/deploy/dataflow/metadata.json

flex-template-run:
	$(call require,PROJECT)
	$(call require,BUCKET)
	$(call require,PARAMETERS)
	$(call require,SERVICE_ACCOUNT)
	gcloud dataflow flex-template run $(JOB) --project $(PROJECT) --region $(REGION) \
		--template-file-gcs-location $(TEMPLATE) --service-account-email $(SERVICE_ACCOUNT) \
		--temp-location gs://$(BUCKET)/tmp --staging-location gs://$(BUCKET)/staging \
		--parameters "$(PARAMETERS)" $(RUN_FLAGS)

# Replace the running job of the same name, keeping its state (stateful steps matched by name).
flex-template-update:
	$(call require,PROJECT)
	$(call require,BUCKET)
	$(call require,PARAMETERS)
	$(call require,SERVICE_ACCOUNT)
	gcloud dataflow flex-template run $(JOB) --project $(PROJECT) --region $(REGION) --update \
		$(if $(NAME_MAPPING),--transform-name-mappings=$(NAME_MAPPING)) \
		--template-file-gcs-location $(TEMPLATE) --service-account-email $(SERVICE_ACCOUNT) \
		--temp-location gs://$(BUCKET)/tmp --staging-location gs://$(BUCKET)/staging \
		--parameters "$(PARAMETERS)" $(RUN_FLAGS)

# The scorer's Bento from the model in $BENTOML_HOME (refused when trained on another feature version), then its
# image (Docker) pushed to Artifact Registry.
scorer-bento: $(STAMP)
	$(BIN)/python -m infra.deploy.scorer_bento build

scorer-image: scorer-bento
	$(call require,SCORER_IMAGE)
	$(BIN)/bentoml containerize lead_scorer:latest -t $(SCORER_IMAGE)
	docker push $(SCORER_IMAGE)

# Soak: the streaming pipeline on a local stack (free ports) for SOAK_MINUTES at SOAK_RATE msg/s; zero loss and flat
# memory (RSS slope), a table and .bench/soak.json; non-zero exit on failure.
SOAK_MINUTES ?= 10
SOAK_RATE ?= 10
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python -m pipelines.dev.soak --minutes $(SOAK_MINUTES) --rate $(SOAK_RATE)
