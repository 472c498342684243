"""topapi, the old-style API: v2/user/get answers a staff id's unionId (errcode in a 200 answer, as topapi does)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.sandbox.http import Route, json_response
from bot.sandbox.ids import topapi_request_id
from bot.sandbox.state import PlatformState


class TopApi(PlatformState):
    async def _api_user_get(self, request: web.Request, segments: list[str], body: Any) -> web.Response:
        token = request.query.get("access_token", "")
        if token not in self._valid_tokens:
            return json_response(
                200, {"errcode": 88, "sub_code": "40014", "sub_msg": "不合法的access_token", "errmsg": "invalid token"}
            )
        corp_id = self._token_corps.get(token)
        staff_id = body.get("userid", "")
        union_id = self.users.get(staff_id) if corp_id is None else self.org_users.get((corp_id, staff_id))
        if union_id is None:
            return json_response(200, {"errcode": 60121, "errmsg": "找不到该用户", "request_id": topapi_request_id()})
        result = {**_USER_DETAILS, "userid": body["userid"], "unionid": union_id, "name": "Sandbox User"}
        return json_response(200, {"errcode": 0, "errmsg": "ok", "result": result, "request_id": topapi_request_id()})


ROUTES = (Route("POST", "/topapi/v2/user/get", "user/get", TopApi._api_user_get),)


# The rest of a topapi/v2/user/get result as the doc's example shows it ([KB] 0056): the bot reads only `unionid`, but
# parses all of it, so the sandbox sends all of it
_USER_DETAILS: dict[str, Any] = {
    "active": True,
    "admin": False,
    "avatar": "https://static-legacy.dingtalk.com/media/lADPDg7mViaUW2jNAu7NAu4_750_750.jpg",
    "boss": False,
    "dept_id_list": [2, 3, 4],
    "dept_order_list": [{"dept_id": 2, "order": 1}],
    "email": "test@xxx.com",
    "exclusive_account": False,
    "extension": '{"爱好":"旅游","年龄":"24"}',
    "hide_mobile": False,
    "hired_date": 1597573616828,
    "job_number": "4",
    "leader_in_dept": [{"dept_id": 2, "leader": False}],
    "manager_userid": "manager240",
    "mobile": "18513027676",
    "org_email": "test@xxx.com",
    "real_authed": True,
    "remark": "备注",
    "role_list": [{"group_name": "默认", "id": 1, "name": "负责人"}],
    "senior": False,
    "state_code": "86",
    "telephone": "010-86123456-2345",
    "title": "技术总监",
    "union_emp_ext": {},
    "work_place": "未来park",
}
