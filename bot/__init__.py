"""DingTalk Stream-mode chatbot that unsubscribes employees from calendars and answers with cards."""

# The one place the version is written: pyproject.toml reads it, and a dyno runs the bot from the checkout, uninstalled.
__version__ = "0.1.0"
