"""What a rule sends and does: a template (or the variants of an A/B test) with a coupon,
the steps of a journey, its goal, its limit and what follows a sent message."""

from __future__ import annotations

import functools
import hashlib
from datetime import timedelta
from typing import Literal

from pydantic import (
    ConfigDict,
    Field,
    model_validator,
)

from automator.model_base import Duration, Identifier, Strict
from automator.model_conditions import Conditions


class CouponSpec(Strict):
    """A coupon attached to the message: taken from a pool, or generated."""

    model_config = ConfigDict(title="coupon")

    pool: Identifier | None = Field(default=None, description="take a code from this pool")
    when_empty: Literal["hold", "generate"] = Field(
        default="hold", description="what to do when the pool has no free code"
    )
    percent_off: int | None = Field(
        default=None, ge=1, le=100, description="the discount of a generated code"
    )
    expires_in: Duration = Field(
        default=timedelta(days=30), description="a generated code expires this long after it is queued"
    )
    prefix: str = Field(
        default="", pattern=r"^[A-Z0-9-]{0,12}$", description="a generated code starts with it, e.g. THANKS"
    )


class Variant(Strict):
    """One version of an A/B test: its template, its coupon, and its share of the contacts."""

    model_config = ConfigDict(title="variant")

    template: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="a folder under email_templates/")
    coupon: CouponSpec | None = Field(default=None, description="one coupon code for each message")
    weight: int | None = Field(
        default=None,
        ge=1,
        description="its share of the contacts in percent; variants without one share what is left",
    )


class Send(Strict):
    """What to send: a template folder under email_templates/ and an optional coupon, or
    `variants` of an A/B test, one of which each contact always gets."""

    model_config = ConfigDict(title="send")

    template: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]+$", description="a folder under email_templates/"
    )
    coupon: CouponSpec | None = Field(default=None, description="one coupon code for each message")
    variants: dict[Identifier, Variant] | None = Field(
        default=None, description="an A/B test: name → template (and weight); a contact always gets the same"
    )

    @model_validator(mode="after")
    def _template_or_variants(self) -> Send:
        if (self.template is None) == (self.variants is None):
            raise ValueError("give either template or variants")
        if self.variants is not None and len(self.variants) < 2:
            raise ValueError("variants: give at least two")
        if self.variants is not None:
            given = sum(variant.weight or 0 for variant in self.variants.values())
            if given >= 100 and any(variant.weight is None for variant in self.variants.values()):
                raise ValueError(
                    f"variants: the weights given add up to {given}, "
                    "leaving nothing of 100 for the variants without one"
                )
            if given != 100 and all(variant.weight is not None for variant in self.variants.values()):
                raise ValueError(
                    f"variants: the weights add up to {given}; they are percent of the contacts, "
                    "so they add up to 100"
                )
        return self

    @property
    def weights(self) -> dict[str, float]:
        """Each variant's share, in percent when some weights are given (the variants
        without one share what is left of 100), equal when none are."""
        variants = self.variants or {}
        given = sum(variant.weight or 0 for variant in variants.values())
        unweighted = [name for name, variant in variants.items() if variant.weight is None]
        left = (100 - given) / len(unweighted) if unweighted else 0
        return {name: float(variant.weight) if variant.weight else left for name, variant in variants.items()}

    def variant(self, name: str | None) -> Variant:
        """What a message of variant `name` sends (None: the send without variants)."""
        if self.variants is None or name is None:
            assert self.template is not None, "a send with variants needs a variant's name"
            return self.resolved_variants[None]
        return self.resolved_variants[name]

    @functools.cached_property
    def resolved_variants(self) -> dict[str | None, Variant]:
        """What each variant sends (None: the send without variants), a variant without a
        coupon of its own taking the send's. Made once per send: queueing asks for every
        message it drafts."""
        if self.variants is None:
            assert self.template is not None
            return {None: Variant(template=self.template, coupon=self.coupon)}
        return {
            name: chosen if chosen.coupon is not None else chosen.model_copy(update={"coupon": self.coupon})
            for name, chosen in self.variants.items()
        }

    def choose(self, rule_id: str, contact_id: int) -> str | None:
        """The variant a contact gets: a hash of rule and contact, spread by the weights, so
        that the same contact always gets the same one. None for a send without variants."""
        if self.variants is None:
            return None
        shares = self.weights
        names = sorted(shares)
        weights = [shares[name] for name in names]
        digest = hashlib.sha256(f"{rule_id}:{contact_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * sum(weights)
        for name, weight in zip(names, weights, strict=True):
            if point < weight:
                return name
            point -= weight
        return names[-1]

    @property
    def templates(self) -> list[str]:
        if self.variants is None:
            return [self.template] if self.template else []
        return [variant.template for variant in self.variants.values()]

    @property
    def coupons(self) -> list[CouponSpec]:
        """Every coupon a message of this send may take."""
        found = [self.coupon] if self.coupon else []
        found += [variant.coupon for variant in (self.variants or {}).values() if variant.coupon]
        return found


class Step(Strict):
    """One message of a journey: sent `delay` after the previous step was sent, and skipped
    (the journey goes on) when its `when` does not hold then."""

    model_config = ConfigDict(title="step")

    delay: Duration = Field(default=timedelta(0), description="after the previous step was sent")
    when: Conditions = Field(default=[], description="this step is skipped unless these hold then")
    send: Send = Field(description="what this step sends")


class Goal(Strict):
    """What the rule is for: an event that, once the contact has it, ends the journey (later
    steps are cancelled) and counts as a conversion when it comes within `within` of a message."""

    model_config = ConfigDict(title="goal")

    event: Identifier = Field(description="the event type that reaches the goal, e.g. order_placed")
    within: Duration = Field(
        default=timedelta(days=7), description="a conversion counts this long after a message"
    )


class Limit(Strict):
    """At most `max` messages of the rule per contact in any span of `per`; one more is not
    queued (it is recorded as skipped), it does not wait."""

    model_config = ConfigDict(title="limit")

    max: int = Field(ge=1, le=1_000_000, description="messages of this rule per contact")
    per: Duration = Field(description="in any span this long, e.g. 7d")


class Then(Strict):
    """What happens to the contact once the message is sent."""

    model_config = ConfigDict(title="then")

    move_to: Identifier | None = Field(default=None, description="put the contact in this stage")
    tag: Identifier | None = Field(default=None, description="add this tag to the contact")
