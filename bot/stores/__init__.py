"""Where state lives: one small interface per concern, kept in the process, in SQLite (BOT_STATE_DIR) or in Redis.
May import: models, config, logs, stats. Never any other folder of the bot (tests/test_layering.py)."""
