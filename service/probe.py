"""``python -m service.probe``: exit 0 when the local service is ready, 1 otherwise.

The container's HEALTHCHECK, without curl: it asks ``/health/ready`` on the port that
``python -m service`` listens on (SOFTSERVE_HTTP_PORT), and prints the reason when not ready.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from service.config import Settings

__all__ = ["main", "ready_url"]


def ready_url(settings: Settings) -> str:
    """The readiness address of the server these settings start: a wildcard bind is asked on
    loopback."""
    host = settings.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}/health/ready"


def main(timeout: float = 3.0) -> int:
    url = ready_url(Settings())
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via http_proxy
    try:
        with direct.open(url, timeout=timeout) as response:
            print(f"{url}: {response.status}")
            return 0
    except urllib.error.HTTPError as exc:  # 503 with the reason in the one error shape
        print(f"{url}: {exc.code} {exc.read(2000).decode('utf-8', 'replace')}")
    except (OSError, ValueError) as exc:
        print(f"{url}: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
