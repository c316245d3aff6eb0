"""Notification texts per event and language, rendered with Jinja2.

Each event has a subject and a body in English and Hindi. StrictUndefined
makes a missing parameter an error at render time, not a message with a hole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, StrictUndefined

LANGUAGES = ("en", "hi")

_RAW: dict[str, dict[str, tuple[str, str]]] = {
    "order_accepted": {
        "en": ("Order received", "We have your order {{ order_id }} and are checking the shelf."),
        "hi": ("ऑर्डर मिला", "आपका ऑर्डर {{ order_id }} हमें मिल गया है, हम सामान देख रहे हैं।"),
    },
    "order_confirmed": {
        "en": ("Order confirmed", "Your order {{ order_id }} is confirmed. Total ₹{{ total_rupees }}."),
        "hi": ("ऑर्डर पक्का हुआ", "आपका ऑर्डर {{ order_id }} पक्का हो गया है। कुल ₹{{ total_rupees }}।"),
    },
    "order_rejected": {
        "en": ("Order could not be placed", "Sorry, order {{ order_id }} could not be placed ({{ reason }})."),
        "hi": ("ऑर्डर नहीं हो सका", "माफ़ कीजिए, ऑर्डर {{ order_id }} नहीं हो सका ({{ reason }})।"),
    },
    "order_out_for_delivery": {
        "en": ("On the way", "Your order {{ order_id }} is out for delivery."),
        "hi": ("रास्ते में", "आपका ऑर्डर {{ order_id }} डिलीवरी के लिए निकल चुका है।"),
    },
    "order_delivered": {
        "en": ("Delivered", "Your order {{ order_id }} has been delivered. Thank you!"),
        "hi": ("पहुँच गया", "आपका ऑर्डर {{ order_id }} पहुँच गया है। धन्यवाद!"),
    },
    "payment_failed": {
        "en": ("Payment failed", "The payment for order {{ order_id }} failed. You can try again in the app."),
        "hi": ("भुगतान विफल", "ऑर्डर {{ order_id }} का भुगतान नहीं हो सका। ऐप में फिर से कोशिश करें।"),
    },
    "refund_processed": {
        "en": ("Refund processed", "₹{{ amount_rupees }} for order {{ order_id }} is on its way back to you."),
        "hi": ("रिफंड हुआ", "ऑर्डर {{ order_id }} के ₹{{ amount_rupees }} आपको वापस भेजे जा रहे हैं।"),
    },
    "achievement_earned": {
        "en": ("New achievement", "You earned “{{ achievement }}”!"),
        "hi": ("नई उपलब्धि", "आपने “{{ achievement_hi | default(achievement) }}” हासिल किया!"),
    },
    "points_returned": {
        "en": ("Points returned", "{{ points }} points from order {{ order_id }} are back in your balance."),
        "hi": ("पॉइंट्स वापस", "ऑर्डर {{ order_id }} के {{ points }} पॉइंट्स आपके बैलेंस में वापस आ गए हैं।"),
    },
    "welcome": {
        "en": ("Welcome to Kirana", "Your Kirana account for {{ email }} is ready. Log in with your password."),
        "hi": ("Kirana में स्वागत है", "{{ email }} के लिए आपका Kirana खाता तैयार है। अपने पासवर्ड से लॉगिन करें।"),
    },
    "account_exists": {
        "en": ("Someone tried to sign up with your email",
               "Someone tried to create a Kirana account for {{ email }}, which already has one. If it was you, "
               "log in instead (or reset your password). If not, you need do nothing: your account is unchanged."),
        "hi": ("किसी ने आपके ईमेल से साइन अप करने की कोशिश की",
               "किसी ने {{ email }} के लिए नया Kirana खाता बनाने की कोशिश की, जिसका खाता पहले से है। अगर यह आप थे, तो "
               "लॉगिन करें (या पासवर्ड बदलें)। अगर नहीं, तो कुछ करने की ज़रूरत नहीं: आपका खाता जैसा था वैसा है।"),
    },
    "login_otp": {
        "en": ("Kirana login code",
               "Your Kirana login code is {{ code }}. It expires in {{ minutes }} minutes; do not share it."),
        "hi": ("Kirana लॉगिन कोड",
               "आपका Kirana लॉगिन कोड {{ code }} है। यह {{ minutes }} मिनट में समाप्त होगा; इसे किसी को न बताएं।"),
    },
}

_env = Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
_COMPILED = {
    (event, lang): (_env.from_string(subject), _env.from_string(body))
    for event, langs in _RAW.items()
    for lang, (subject, body) in langs.items()
}
EVENTS = frozenset(_RAW)


def render(event: str, language: str, params: Mapping[str, Any]) -> tuple[str, str]:
    """(subject, body) of `event` in `language` (English when the language has no text)."""
    if event not in EVENTS:
        raise KeyError(f"no template for {event!r}")
    subject, body = _COMPILED.get((event, language)) or _COMPILED[(event, "en")]
    return subject.render(**params), body.render(**params)
