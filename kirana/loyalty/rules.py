"""What an order earns: the point rules, read from configuration.

Each rule that earns anything becomes one ledger entry, `<order id>:<rule>`,
so an order earns under a rule at most once however often it is awarded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kirana.config import Settings, settings

BASE = "base"
BONUS_CATEGORY = "bonus_category"
FIRST_ORDER = "first_order"
# Ledger rules of points spent at checkout and given back.
REDEEM = "redeem"


@dataclass(frozen=True)
class Rules:
    paise_per_point: int = 1000
    bonus_categories: frozenset[str] = frozenset()
    first_order_bonus: int = 50
    point_value_paise: int = 25

    @classmethod
    def from_settings(cls, cfg: Settings | None = None) -> Rules:
        cfg = cfg or settings()
        return cls(
            paise_per_point=max(1, cfg.loyalty_paise_per_point),
            bonus_categories=frozenset(c.strip() for c in cfg.loyalty_bonus_categories.split(",") if c.strip()),
            first_order_bonus=cfg.loyalty_first_order_bonus,
            point_value_paise=cfg.loyalty_point_value_paise,
        )

    def earned(self, order: Mapping[str, Any], categories: Mapping[str, str], *, first: bool) -> dict[str, int]:
        """Points per rule for a confirmed order; `categories` maps sku -> category.

        Points are on what the customer paid (after a points discount); a bonus
        category earns its lines' points a second time.
        """
        paid = int(order.get("total_paise") or 0)
        earned = {BASE: paid // self.paise_per_point}
        bonus_paise = sum(int(line["line_total_paise"]) for line in order.get("lines", [])
                          if categories.get(line["sku"]) in self.bonus_categories)
        # A discount shrinks the bonus in proportion, so a bonus never exceeds what was paid.
        subtotal = int(order.get("subtotal_paise") or paid)
        if subtotal > 0 and paid < subtotal:
            bonus_paise = bonus_paise * paid // subtotal
        earned[BONUS_CATEGORY] = bonus_paise // self.paise_per_point
        if first:
            earned[FIRST_ORDER] = self.first_order_bonus
        return {rule: points for rule, points in earned.items() if points > 0}

    def discount_paise(self, points: int) -> int:
        return points * self.point_value_paise
