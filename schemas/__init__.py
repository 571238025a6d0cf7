"""Record definitions and the schemas derived from them."""

from schemas.records import TABLES, ApiLeadPayload, DeadLetter, Lead, LeadEvent, SourceDailyCounts, SourceHistory

__all__ = ["TABLES", "ApiLeadPayload", "DeadLetter", "Lead", "LeadEvent", "SourceDailyCounts", "SourceHistory"]
