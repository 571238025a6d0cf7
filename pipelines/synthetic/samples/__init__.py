"""The bundled sample: messages from every provider (``messages.jsonl``, with its ground-truth manifest) and the
agent events that answer its offers (``agent_events.jsonl``)."""

from importlib import resources
from pathlib import Path


def sample_path() -> Path:
    return Path(str(resources.files(__name__).joinpath("messages.jsonl")))


def agent_events_path() -> Path:
    """Simulated agent events for the sample (``pipelines.synthetic.agents``): accepts, rejections, silence."""
    return Path(str(resources.files(__name__).joinpath("agent_events.jsonl")))
