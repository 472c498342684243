"""The Stream connection: the WebSocket transport and gateway, frames in and ACKs out, the intake (written down before
its ACK), the inbox's workers and repeat detection, and the card step each reply records before it is written.
May import: models, config, logs, telemetry, stores/, dingtalk/, auth/, commands/ (progress), cards/. Never:
app/pipeline/wiring, sandbox/ (tests/test_layering.py)."""
