"""The loopback DingTalk: a platform that answers as DingTalk documents and records every request, plus the demo
that runs the real bot against it. Used by the demo, the tests and the benchmark; the bot itself never imports it.
May import anything of the bot (the top layer, with __main__); nothing of the bot but __main__ imports it
(tests/test_layering.py).

platform assembles `Sandbox` from: state (users, organizations, calendars, tokens, recorded requests, ACKs,
waiting), stream (the gateway and WebSocket), messages and isv (what is pushed), http_api/ (one module per route
group: tokens, topapi, calendar, robot), faults and answers (injected failures). A new API is one module in
http_api/ (see its docstring); ids and http hold DingTalk's id and answer shapes."""
