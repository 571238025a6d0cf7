variable "project" {
  description = "GCP project id that holds every Leadflow resource."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project))
    error_message = "project must be a GCP project id: 6-30 lower-case letters, digits or hyphens."
  }
}

variable "region" {
  description = "Region of the Dataflow job, the Cloud Run scorer, the bucket and the Artifact Registry repository."
  type        = string
  default     = "us-central1"
}

variable "bq_location" {
  description = "BigQuery dataset location (multi-region US/EU or a region)."
  type        = string
  default     = "US"
}

variable "dataset" {
  description = "BigQuery dataset id for every table and view (the pipeline's --bq_dataset=PROJECT:DATASET)."
  type        = string
  default     = "leadflow"
  validation {
    condition     = can(regex("^[A-Za-z0-9_]{1,1024}$", var.dataset))
    error_message = "dataset may hold only letters, digits and underscores."
  }
}

variable "message_retention" {
  description = "How long Pub/Sub keeps unacknowledged messages on every subscription (and every message on the input topics), e.g. 604800s = 7 days, the maximum for subscriptions."
  type        = string
  default     = "604800s"
}

variable "retention_days" {
  description = "Days BigQuery keeps the partitions of each retention policy (dead_letters, events, history), over the defaults of schemas/records.py RETENTION_DAYS (dead_letters 30, events 730, history kept); 0 keeps them. See docs/runbook.md, Retention."
  type        = map(number)
  default     = {}
}

variable "bi_members" {
  description = "Analysts (group:..., user:...): read the dataset with personal columns masked (hashed identifiers, null free text)."
  type        = list(string)
  default     = []
}

variable "operations_members" {
  description = "Operations (group:..., user:...): read the dataset with personal columns raw (on-call, leadflow forget)."
  type        = list(string)
  default     = []
}

variable "max_delivery_attempts" {
  description = "Deliveries of one message on the pipeline's input subscriptions before Pub/Sub forwards it to the dead-letter topic (5-100)."
  type        = number
  default     = 10
  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100 (Pub/Sub's limits)."
  }
}

variable "scorer_image" {
  description = "The BentoML scorer image (bentoml containerize lead_scorer:VERSION, pushed to the Artifact Registry repository), e.g. us-central1-docker.pkg.dev/PROJECT/leadflow/lead_scorer:VERSION."
  type        = string
}

variable "scorer_model" {
  description = "Model tag the scorer serves (LEADFLOW_SCORER_MODEL); the Bento carries the model."
  type        = string
  default     = "lead_scorer:latest"
}

variable "scorer_ingress" {
  description = "Who can reach the scorer: INGRESS_TRAFFIC_INTERNAL_ONLY (the project's VPC; Dataflow workers need private IPs on a subnet with Private Google Access) or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER. The service's bearer token is checked in either case."
  type        = string
  default     = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  validation {
    condition     = contains(["INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], var.scorer_ingress)
    error_message = "the scorer is never open to the internet: use INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  }
}

variable "scorer_min_instances" {
  description = "Cloud Run minimum instances of the scorer (1 keeps one warm: no cold start on the first lead)."
  type        = number
  default     = 1
}

variable "scorer_max_instances" {
  description = "Cloud Run maximum instances of the scorer (the cost ceiling; the pipeline falls back to rule-based scores when the scorer is saturated)."
  type        = number
  default     = 10
}

variable "scorer_cpu" {
  description = "vCPUs per scorer instance."
  type        = string
  default     = "2"
}

variable "scorer_memory" {
  description = "Memory per scorer instance."
  type        = string
  default     = "2Gi"
}

variable "deployer_members" {
  description = "Principals (user:..., group:..., serviceAccount:...) allowed to launch the Dataflow job as the job's service account (roles/iam.serviceAccountUser on that account only). They also need roles/dataflow.developer, granted outside this module."
  type        = list(string)
  default     = []
}

variable "labels" {
  description = "Labels on every resource that takes them."
  type        = map(string)
  default     = { app = "leadflow" }
}

variable "gateway_image" {
  description = "The gateway's container image (infra/deploy/gateway/Dockerfile), e.g. REGION-docker.pkg.dev/P/leadflow/gateway:TAG."
  type        = string
}

variable "gateway_public_url" {
  description = "The gateway's public base URL as providers call it (Twilio signs it): the service URL or a custom domain. Empty until the first apply prints gateway_url."
  type        = string
  default     = ""
}

variable "gateway_min_instances" {
  description = "Gateway instances kept warm (a provider's first webhook must not wait for a cold start)."
  type        = number
  default     = 1
}

variable "gateway_max_instances" {
  description = "Most gateway instances (with gateway_shared_state they share rate limits and idempotency keys)."
  type        = number
  default     = 4
}

variable "gateway_shared_state" {
  description = "A Memorystore Redis shared by every gateway instance (rate limits, idempotency keys, external ids)."
  type        = bool
  default     = true
}

variable "gateway_network" {
  description = "VPC network of the gateway's Redis and of its Direct VPC egress."
  type        = string
  default     = "default"
}

variable "gateway_subnetwork" {
  description = "Subnetwork (in var.region) the gateway's instances take their VPC addresses from."
  type        = string
  default     = "default"
}
