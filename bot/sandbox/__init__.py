"""The loopback DingTalk: a platform that answers as DingTalk documents (Stream gateway and WebSocket, tokens,
topapi, calendars, replies, faults) and records every request, plus the demo that runs the real bot against it. Used
by the demo, the tests and the benchmark; the bot itself never imports it.
May import anything of the bot (the top layer, with __main__); nothing of the bot but __main__ imports it
(tests/test_layering.py)."""
