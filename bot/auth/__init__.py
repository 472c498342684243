"""Who acts: the app's token, a third-party (ISV) suite's organization tokens from suite tickets, users' own tokens
(OAuth, its web port and limits), sealing secrets at rest, and the sender's unionId. May import models, config, logs,
dingtalk/ and stores/; never commands/, cards/, stream/ or the pipeline."""
