"""Where state lives: one small interface per concern, kept in the process, in SQLite (BOT_STATE_DIR) or in Redis."""
