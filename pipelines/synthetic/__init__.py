"""Synthetic data: people, provider payloads, e-mails, lead history, agent events, the bundled sample."""
