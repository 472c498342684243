"""What the bot can be asked: parsing a message's text into a Command, one module per command returning Reply data,
and the pure helpers they share (resolving names, wildcards, explaining DingTalk's errors). May import models,
config, logs, dingtalk/, auth/ and stores/; never cards/, stream/ or the pipeline."""
