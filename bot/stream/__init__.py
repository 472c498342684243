"""The Stream connection: the WebSocket transport and gateway, frames in and ACKs out, the intake (written down before
its ACK), the inbox's workers and repeat detection, and each command's progress. May import models, config, logs,
dingtalk/ and stores/; never commands/, cards/ or the pipeline."""
