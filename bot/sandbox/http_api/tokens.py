"""Tokens and who the user is: accessToken, corpAccessToken, the OAuth page, userAccessToken, users/me."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot.sandbox.http import Route, error_response, json_response
from bot.sandbox.state import PlatformState


class TokenApi(PlatformState):
    async def _api_accessToken(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        if body.get("appKey") != self.client_id or body.get("appSecret") != self.client_secret:
            return error_response(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        token = f"sandbox-token-{uuid.uuid4().hex}"
        self._valid_tokens.add(token)
        self.issued_secrets.append(token)
        return json_response(200, {"accessToken": token, "expireIn": self.token_lifetime})

    async def _api_corpAccessToken(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        if body.get("suiteKey") != self.client_id or body.get("suiteSecret") != self.client_secret:
            return error_response(400, "invalidSuiteKey", "suiteKey或suiteSecret不合法")
        if not self.suite_ticket or body.get("suiteTicket") != self.suite_ticket:
            return error_response(400, "invalidSuiteTicket", "suiteTicket不合法")
        corp_id = body.get("authCorpId")
        if corp_id not in self.authorized_corps:
            return error_response(400, "invalidAuthInfo", "授权关系不存在")
        token = f"sandbox-corp-token-{uuid.uuid4().hex}"  # a new one each time, as DingTalk documents
        self._valid_tokens.add(token)
        self._token_corps[token] = corp_id
        self.issued_secrets.append(token)
        return json_response(200, {"accessToken": token, "expireIn": self.token_lifetime})

    async def _api_authorize(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        """login.dingtalk.com/oauth2/auth: the signed-in user consents at once; the browser goes back to
        redirect_uri with an authCode and the state, as DingTalk sends it."""
        query = request.query
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or query.get("response_type") != "code" or not redirect_uri:
            return web.Response(status=400, text="invalid authorize request")
        if "openid" not in query.get("scope", "").split() or not self.signed_in:
            return web.Response(status=400, text="invalid scope, or nobody signed in")
        code = f"sandbox-code-{uuid.uuid4().hex}"
        self._auth_codes[code] = self.signed_in
        self.withdrawn.discard(self.signed_in)  # consenting again
        separator = "&" if "?" in redirect_uri else "?"
        location = f"{redirect_uri}{separator}{urlencode({'authCode': code, 'state': query.get('state', '')})}"
        return web.Response(status=302, headers={"Location": location})

    async def _api_userAccessToken(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        if body.get("clientId") != self.client_id or body.get("clientSecret") != self.client_secret:
            return error_response(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        grant = body.get("grantType")
        if grant == "authorization_code":
            union_id = self._auth_codes.pop(str(body.get("code")), None)
            if union_id is None:
                return error_response(400, "invalidAuthCode", "不合法的临时授权码")
        elif grant == "refresh_token":
            union_id = self._refresh_tokens.pop(str(body.get("refreshToken")), None)
            if union_id is None or union_id in self.withdrawn:
                return error_response(400, "invalidRefreshToken", "不合法的refresh_token")
        else:
            return error_response(400, "invalidParameter", "grantType is invalid")
        token, refresh = f"sandbox-user-token-{uuid.uuid4().hex}", f"sandbox-refresh-{uuid.uuid4().hex}"
        self._valid_tokens.add(token)
        self._user_tokens[token] = union_id
        self._refresh_tokens[refresh] = union_id
        self.issued_secrets += [token, refresh]
        answer = {
            "accessToken": token,
            "refreshToken": refresh,
            "expireIn": self.token_lifetime,
            "corpId": self.corp_id,
        }
        return json_response(200, answer)

    async def _api_users_me(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        token = request.headers.get("x-acs-dingtalk-access-token", "")
        denied = self._check_token(request) or self._check_user_token(token, None)
        if denied is not None:
            return denied
        union_id = self._user_tokens.get(token)
        if union_id is None:  # an app token has no "me"
            return error_response(404, "invalidParameter.user.notFound", "用户不存在")
        me = {"nick": "Sandbox User", "unionId": union_id, "openId": f"open-{union_id}", "stateCode": "86"}
        return json_response(200, me)


ROUTES = (
    Route("POST", "/v1.0/oauth2/accessToken", "accessToken", TokenApi._api_accessToken),
    Route("POST", "/v1.0/oauth2/corpAccessToken", "corpAccessToken", TokenApi._api_corpAccessToken),
    Route("GET", "/oauth2/auth", "authorize", TokenApi._api_authorize),
    Route("POST", "/v1.0/oauth2/userAccessToken", "userAccessToken", TokenApi._api_userAccessToken),
    Route("GET", "/v1.0/contact/users/me", "users/me", TokenApi._api_users_me),
)
