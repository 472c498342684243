"""The loopback DingTalk: a platform that answers as DingTalk documents (Stream gateway and WebSocket, tokens,
topapi, calendars, replies, faults) and records every request, plus the demo that runs the real bot against it. Used
by the demo, the tests and the benchmark; the bot itself never imports it."""
