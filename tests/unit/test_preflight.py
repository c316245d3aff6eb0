"""kirana.preflight: outside development, no process starts with a development default of a secret."""

from __future__ import annotations

import dataclasses

import pytest

from kirana import preflight
from kirana.config import Settings

REAL = {
    "token_secret": "x" * 48,
    "razorpay_key_id": "rzp_live_abc",
    "razorpay_key_secret": "live-key-secret",
    "razorpay_webhook_secret": "live-webhook-secret",
    "sms_api_key": "sms-live",
    "push_server_key": "push-live",
    "sms_base_url": "https://sms.example.com",
    "push_base_url": "https://push.example.com",
    "flower_basic_auth": "ops:a-long-password",
}


def test_the_embedded_defaults_are_development_and_start() -> None:
    cfg = Settings()
    assert preflight.outside_development(cfg) is None
    preflight.check(cfg, flower=True)  # nothing raised


def test_production_with_the_repositorys_defaults_is_refused_naming_every_variable() -> None:
    cfg = Settings(kirana_env="production")
    with pytest.raises(preflight.Refused) as refused:
        preflight.check(cfg, flower=True, process="api")
    message = str(refused.value.code)
    assert message.startswith("api refuses to start (KIRANA_ENV=production)")
    for var in ("TOKEN_SECRET", "RAZORPAY_KEY_ID", "RAZORPAY_KEY_SECRET", "RAZORPAY_WEBHOOK_SECRET", "SMS_API_KEY",
                "PUSH_SERVER_KEY", "SMS_BASE_URL", "PUSH_BASE_URL", "FLOWER_BASIC_AUTH"):
        assert var in message, var


def test_a_real_gateway_url_is_outside_development_even_without_kirana_env() -> None:
    cfg = Settings(razorpay_base_url="https://api.razorpay.com")
    assert "not the local sandbox" in (preflight.outside_development(cfg) or "")
    with pytest.raises(preflight.Refused, match="RAZORPAY_WEBHOOK_SECRET is the development default"):
        preflight.check(cfg)


def test_production_with_every_secret_set_starts() -> None:
    preflight.check(Settings(kirana_env="production", **REAL), flower=True)


@pytest.mark.parametrize("field", sorted(REAL))
def test_each_secret_left_at_its_default_alone_is_named(field: str) -> None:
    default = {f.name: f.default for f in dataclasses.fields(Settings)}[field]
    cfg = Settings(kirana_env="production", **{**REAL, field: default})
    found = preflight.wrong(cfg, flower=True)
    assert len(found) == 1, found
    assert found[0].split(" ", 1)[0].split("=", 1)[0] == field.upper(), found


def test_an_empty_or_short_token_secret_is_refused() -> None:
    assert preflight.wrong(Settings(kirana_env="production", **{**REAL, "token_secret": ""})) == [
        "TOKEN_SECRET is empty"]
    assert preflight.wrong(Settings(kirana_env="production", **{**REAL, "token_secret": "short"})) == [
        "TOKEN_SECRET is shorter than 32 bytes"]


def test_a_console_provider_needs_no_gateway_key() -> None:
    cfg = Settings(kirana_env="production", **{**REAL, "sms_provider": "console",
                                               "sms_api_key": "kirana-sandbox-sms-key",
                                               "sms_base_url": "http://127.0.0.1:9200"})
    assert preflight.wrong(cfg) == []


def test_the_flower_check_wants_user_and_password() -> None:
    cfg = Settings(kirana_env="production", **{**REAL, "flower_basic_auth": "ops"})
    assert preflight.wrong(cfg, flower=True) == ["FLOWER_BASIC_AUTH is not user:password"]
    assert preflight.wrong(cfg) == []  # only Flower's own container checks it
