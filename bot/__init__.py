"""DingTalk Stream-mode chatbot that unsubscribes employees from calendars and answers with cards."""
