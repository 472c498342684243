"""Cards: a Reply rendered through the Jinja2 templates with every value escaped, delivered to its conversation
(session webhook, else the robot OpenAPI), and drawn in a terminal for the demo.
May import: models, config, logs, telemetry, template_files, stores/, dingtalk/, auth/, commands/. Never: stream/,
app/pipeline/wiring, sandbox/ (tests/test_layering.py)."""
