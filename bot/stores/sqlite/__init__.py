"""The embedded SQLite implementations of the stores (BOT_STATE_DIR when REDIS_URL is unset): one database file on a
thread of its own, and the state folder it lives in (one process at a time, private modes)."""
