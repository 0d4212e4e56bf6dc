"""automator: a marketing automation rules engine.

Marketers write declarative rule files keyed to journey stages and triggers; automator
evaluates them set-wise against a contact store and sends deduplicated, templated email.
"""

__version__ = "0.1.0"
