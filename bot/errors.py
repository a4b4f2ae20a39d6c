"""Exceptions shared across the bot; each names what went wrong in words a user can act on."""


class MoodbotError(Exception):
    """Base class for the bot's own errors."""


class ConfigError(MoodbotError):
    """config.yaml or an environment override is invalid."""


class ModelNotFoundError(MoodbotError):
    """The configured model path does not exist; the message says how to get weights onto the machine."""


class EngineError(MoodbotError):
    """The model failed while classifying or generating."""


class EngineTimeout(EngineError):
    """The model did not answer within the configured time."""


class StoreError(MoodbotError):
    """The database cannot be opened or written."""


class InputError(MoodbotError):
    """An input file or message cannot be read."""


class StopPipeline(Exception):
    """Raised by a stage to end a turn early; the reason is logged at debug level."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SendRefused(MoodbotError):
    """The platform refused a send in a way that retrying now cannot fix (e.g. WeChat's 48-hour window)."""
