"""``python -m service [--host H] [--port P] [--workers N]``: uvicorn on service.app:app.

Every other setting comes from SOFTSERVE_* environment variables (see README), which each worker
process reads when it imports the app.
"""

from __future__ import annotations

import argparse

import uvicorn

from service.config import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be 1..65535, got {args.port}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    settings = Settings()
    uvicorn.run(
        "service.app:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level,
        timeout_graceful_shutdown=15,
    )


if __name__ == "__main__":
    main()
