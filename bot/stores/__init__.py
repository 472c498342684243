"""Where state lives. One module per concern holds its Protocol and its in-process implementation (admission, limiter,
tokens, union_ids, suite_tickets, grants, previews, audit, languages, journal); sqlite/<concern>.py and
redis/<concern>.py hold the others, on the one shared Database (the journal keeps a file of its own) and the one
shared Redis client. keys.py makes every key from the tenant and the concern; batching.py is the one "write in
batches while one is in flight"; fallback.py wraps Redis with the in-process stores; build.py picks them for a
configuration. Every store forgets an organization with one call (forget_organization).
May import: models, config, logs, stats. Never any other folder of the bot (tests/test_layering.py)."""
