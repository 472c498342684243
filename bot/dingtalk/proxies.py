"""The outbound proxy for a URL, from HTTPS_PROXY / HTTP_PROXY / NO_PROXY (either case), as curl and pip read them."""

from __future__ import annotations

import functools
import urllib.request

import aiohttp
import yarl

NO_PROXY: tuple[yarl.URL | None, aiohttp.BasicAuth | None] = (None, None)


@functools.lru_cache(maxsize=64)
def proxy_for(scheme: str, host: str | None) -> tuple[yarl.URL | None, aiohttp.BasicAuth | None]:
    """The proxy to reach `host` through and its credentials (from the proxy URL), or (None, None). The environment
    is read once per host, never per request, and no file (~/.netrc) is read: aiohttp's trust_env does both on every
    request, in threads."""
    if not host or urllib.request.proxy_bypass(host):
        return NO_PROXY
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy:
        return NO_PROXY
    url = yarl.URL(proxy)
    credentials = aiohttp.BasicAuth(url.user or "", url.password or "") if url.user else None
    return url.with_user(None), credentials
