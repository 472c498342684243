"""DingTalk's HTTP API: the one httpx client (paced, retried, authorized), its transport, proxies, per-command time
budget, the readers of DingTalk's answers and the tree of errors they raise. May import models, config, logs and
stores/ (the per-API limiter); never auth/, commands/, cards/, stream/ or the pipeline."""
