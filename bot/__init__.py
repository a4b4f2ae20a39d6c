"""moodbot: a sentiment-aware chat bot that runs one small local language model."""

__version__ = "0.1.0"
