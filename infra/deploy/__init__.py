"""Deployment: Dataflow Flex Template, production graph check, Terraform generation, scorer Bento."""
