"""What the bot can be asked: parsing a message's text into a Command, one module per command returning Reply data,
a command's recorded progress (progress.py: what an interrupted handling already did), and the pure helpers they
share (resolving names, wildcards, and explain.py: the one table from a failed call to its Outcome).
May import: models, config, logs, telemetry, the version (bot/__init__), stores/, dingtalk/, auth/. Never: cards/,
stream/, app/pipeline/wiring, sandbox/ (tests/test_layering.py)."""
