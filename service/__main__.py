"""``python -m service [--host H] [--port P] [--workers N]``: uvicorn on service.app:app.
(``python -m service models import|export DIR``: see service/models_cli.py.)

The options default to SOFTSERVE_HOST, SOFTSERVE_HTTP_PORT and SOFTSERVE_WORKERS; every other
setting comes from SOFTSERVE_* environment variables (docs/configuration.md), which each worker
process reads when it imports the app. With several workers, Prometheus metrics are kept in files
shared by them (prometheus-client's multiprocess mode, in <state folder>/prometheus unless
PROMETHEUS_MULTIPROC_DIR says where), so that any worker's /metrics counts every request.
"""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn
from pydantic import ValidationError
from pydantic_settings import SettingsError

from service.config import Settings
from service.logs import default_format, uvicorn_config


def main(argv: list[str] | None = None) -> None:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["models"]:  # python -m service models import|export DIR
        from service import models_cli

        sys.exit(models_cli.main(given[1:]))
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"SOFTSERVE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        sys.exit(f"python -m service: bad setting: {problems}")
    except SettingsError as exc:  # a value pydantic-settings could not even decode
        sys.exit(f"python -m service: bad setting: {exc}")
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Serve softserve with uvicorn. Every setting is a SOFTSERVE_* environment "
        "variable (docs/configuration.md); these options win over the three they name.",
    )
    parser.add_argument(
        "--host",
        default=settings.host,
        help="address to bind (default: SOFTSERVE_HOST, else 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=settings.http_port,
        help="port (default: SOFTSERVE_HTTP_PORT, else 8000)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=settings.workers,
        help="worker processes (default: SOFTSERVE_WORKERS, else 1)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be 1..65535, got {args.port}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1 or settings.prometheus_multiproc_dir is not None:
        folder = settings.prometheus_multiproc_dir or settings.job_store_dir / "prometheus"
        folder.mkdir(parents=True, exist_ok=True)
        for stale in [*folder.glob("*.db"), *folder.glob("drift/*")]:  # an earlier run's
            stale.unlink()
        # The workers inherit it; prometheus-client reads it when they import it.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    # uvicorn's own lines in the service's format from the first one, in every worker (written
    # as they come until a worker's app runs its log writer); its access log is off: the app
    # writes one line per request itself.
    uvicorn.run(
        "service.app:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level,
        log_config=uvicorn_config(default_format(settings.log_format), settings.log_level),
        access_log=False,
        timeout_graceful_shutdown=5,  # with the job's grace, inside docker stop's 10 s
    )


if __name__ == "__main__":
    main()
