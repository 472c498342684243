"""The routes DingTalk's HTTP API answers, one module per group (tokens, topapi, calendar, robot, cards). A new
API is one new module here: a class of handlers on the platform state and its ROUTES, added to HttpApi and to ROUTES
below."""

from __future__ import annotations

from bot.sandbox.http import Route
from bot.sandbox.http_api import calendar, cards, robot, tokens, topapi


class HttpApi(tokens.TokenApi, topapi.TopApi, calendar.CalendarApi, robot.RobotApi, cards.CardApi):
    """Every HTTP route group's handlers."""


ROUTES: tuple[Route, ...] = tokens.ROUTES + topapi.ROUTES + calendar.ROUTES + robot.ROUTES + cards.ROUTES
