"""Who acts: the app's token, a third-party (ISV) suite's organization tokens from suite tickets, users' own tokens
(OAuth, its web port and limits), sealing secrets at rest, the sender's unionId, and DingTalk's API bound to one
message's Authorization (api.py: users, commands and cards all call DingTalk through it).
May import: models, config, logs, telemetry, template_files, stores/, dingtalk/. Never: commands/, cards/, stream/,
app/pipeline/wiring, sandbox/ (tests/test_layering.py)."""
