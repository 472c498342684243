"""DingTalk's HTTP API: the one httpx client (paced, retried, authorized by the Credentials protocol it is given), its
transport, proxies, per-command time budget, the hook a reply passes right before it is written (before_send.py),
a few seconds' memory of calendar lists, the readers of DingTalk's answers and the tree of errors they raise
(errors.py: DingTalk's failures, and the bot's own conditions beside them).
May import: models, config, logs, telemetry, stores/ (the per-API limiter). Never: auth/, commands/, cards/, stream/,
app/pipeline/wiring, sandbox/ (tests/test_layering.py)."""
