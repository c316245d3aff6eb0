"""Refuse to start with a development secret where real money or real customers are.

Every secret in kirana/config.py has a default so that `make run` and the tests
need no set-up, and those defaults are public in the repository. A process
outside development that still holds one would accept webhooks anyone can sign,
mint tokens anyone can forge, or send Flower's dashboard to anyone who reads the
README. So API, WebSocket server, workers, beat and the outbox relay call
`check` at start-up, and the Flower container runs `python -m kirana.preflight
--flower` before Flower, and each exits naming every variable that is wrong.

Outside development means KIRANA_ENV=production, or a Razorpay base URL that
is not the local sandbox (its host is not loopback): real keys are then in play.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from urllib.parse import urlsplit

from kirana.config import ENV_NAMES, Settings, settings

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# A token secret shorter than this is guessable offline from one token (HS256).
MIN_TOKEN_SECRET_BYTES = 32

# The secrets every Kirana process is given (compose's x-kirana block, the k8s Secret).
SECRETS = ("token_secret", "razorpay_key_id", "razorpay_key_secret", "razorpay_webhook_secret",
           "sms_api_key", "push_server_key")


class Refused(SystemExit):
    """Start-up refused: a development default outside development (exits non-zero with the reason)."""


def outside_development(cfg: Settings) -> str | None:
    """Why `cfg` is not a development set-up, or None when it is one."""
    if cfg.kirana_env.strip().lower() == "production":
        return "KIRANA_ENV=production"
    host = urlsplit(cfg.razorpay_base_url).hostname or ""
    if host not in LOCAL_HOSTS:
        return f"RAZORPAY_BASE_URL={cfg.razorpay_base_url} is not the local sandbox"
    return None


def wrong(cfg: Settings, *, flower: bool = False) -> list[str]:
    """Each variable that still holds a development default or an unusable value, with why."""
    defaults = {spec.name: spec.default for spec in fields(Settings)}
    found = []
    for name in SECRETS:
        if name == "sms_api_key" and cfg.sms_provider != "http":
            continue  # no SMS gateway in use, so no key
        if name == "push_server_key" and cfg.push_provider != "http":
            continue
        value = getattr(cfg, name)
        if not value.strip():
            found.append(f"{ENV_NAMES[name]} is empty")
        elif value == defaults[name]:
            found.append(f"{ENV_NAMES[name]} is the development default")
    for provider, url, var in ((cfg.sms_provider, cfg.sms_base_url, "SMS_BASE_URL"),
                               (cfg.push_provider, cfg.push_base_url, "PUSH_BASE_URL")):
        if provider == "http" and (urlsplit(url).hostname or "") in LOCAL_HOSTS:
            found.append(f"{var}={url} is the local messaging sandbox")
    if len(cfg.token_secret.encode()) < MIN_TOKEN_SECRET_BYTES and cfg.token_secret.strip():
        found.append(f"TOKEN_SECRET is shorter than {MIN_TOKEN_SECRET_BYTES} bytes")
    if flower:
        user, _, password = cfg.flower_basic_auth.partition(":")
        if not user or not password:
            found.append("FLOWER_BASIC_AUTH is not user:password")
        elif cfg.flower_basic_auth == defaults["flower_basic_auth"]:
            found.append("FLOWER_BASIC_AUTH is the development default")
    return found


def check(cfg: Settings | None = None, *, flower: bool = False, process: str = "kirana") -> None:
    """Raise Refused when `cfg` is outside development and any secret is still a development default."""
    cfg = cfg or settings()
    why = outside_development(cfg)
    if why is None:
        return
    problems = wrong(cfg, flower=flower)
    if problems:
        raise Refused(f"{process} refuses to start ({why}): " + "; ".join(problems)
                      + ". Set them from your secret store (docs/deploy.md, 'Secrets').")


def main(argv: list[str] | None = None) -> int:
    """`python -m kirana.preflight [--flower]`: exit 2 naming what is wrong, 0 when nothing is."""
    args = sys.argv[1:] if argv is None else argv
    try:
        check(settings(), flower="--flower" in args, process="flower" if "--flower" in args else "kirana")
    except Refused as refused:
        print(refused.code, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
