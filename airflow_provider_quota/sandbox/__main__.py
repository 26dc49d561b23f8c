"""``python -m airflow_provider_quota.sandbox``: serve the sandbox on loopback."""

from __future__ import annotations

import argparse

from airflow_provider_quota.sandbox.server import SandboxServer
from airflow_provider_quota.sandbox.state import DEFAULT_API_KEYS, DEFAULT_CLIENTS, SandboxState


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_quota.sandbox",
        description="Serve the Sonarly and Indeed APIs on loopback, for offline DAG development.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default 8765)")
    parser.add_argument("--quota-window", type=float, default=3600.0, help="seconds between prospecting quota resets")
    parser.add_argument("--quota-limit", type=int, default=25, help="prospecting searches per window")
    parser.add_argument("--exhausted", action="store_true", help="start with every quota used up")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="Indeed access token lifetime, seconds")
    parser.add_argument("--seed", type=int, default=0, help="seed of probabilistic faults")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    state = SandboxState(
        quota_window=args.quota_window,
        quota_limit=args.quota_limit,
        exhausted=args.exhausted,
        token_lifetime=args.token_lifetime,
        seed=args.seed,
    )
    server = SandboxServer(args.port, host=args.host, state=state, log_level=args.log_level)
    client_id, client_secret = next(iter(DEFAULT_CLIENTS.items()))
    print(f"Sandbox serving on http://{args.host}:{args.port}", flush=True)
    print(f"  Sonarly API keys: {', '.join(DEFAULT_API_KEYS)}; account groups: ag_sandbox, ag_growth", flush=True)
    print(f"  Indeed OAuth client: {client_id} / {client_secret}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
