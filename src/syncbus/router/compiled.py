"""The live policy compiled for routing: per resource its reader schema and validator,
per grant its view, masker and share topic.

Compiled once per policy version (a ``syncbus apply``), never per event. A policy
whose grants need token secrets that are not configured is refused as a whole,
naming the subscriber and the setting, so a half-configured router never starts
and a running one keeps its previous policy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from syncbus.admin.names import TopicNames
from syncbus.core.codec import Codec
from syncbus.core.masking import TOKEN, Masker, MaskPlan
from syncbus.core.model import Bus, Grant, Resource
from syncbus.core.policy import RoutingTable, UnroutableEvent
from syncbus.core.validation import Validator, compile_validator
from syncbus.core.views import View, ViewCache, subscriber_suffix
from syncbus.router.secrets import TokenSecrets

DLQ_SUBSCRIBER = "syncbus.dlq"


@dataclass(frozen=True)
class GrantRoute:
    """Everything needed to deliver to one grant, prepared once."""

    grant: Grant
    view: View
    masker: Masker
    topic: str
    # deliveries with equal ids share one encoding per event: the view's fingerprint is
    # not enough, since grants masking a field with different kinds have equal view schemas
    encode_id: tuple[bytes, str, int]  # (view fingerprint, shared secret part, plan number)
    audit_tail: bytes  # the audit JSON after the event id, up to the routed_at value
    passthrough: bool  # the view is the source schema: raw bytes may be forwarded
    suffix_head: bytes  # views.subscriber_suffix of the subscriber
    sequence_prefix: str  # "<subscriber>/<resource>/": + source partition = sequence key
    audit_key: bytes  # the subscriber, key of its audit records


@dataclass(frozen=True)
class ResourceRoute:
    resource: Resource
    domain: dict[str, Any]
    reader_fp: bytes
    validator: Validator
    grants: dict[str, GrantRoute]
    dead_letter: GrantRoute  # how a decoded but refused record is masked for the DLQ


class CompiledPolicy:
    def __init__(
        self,
        bus: Bus,
        secrets: TokenSecrets,
        codec: Codec,
        views: ViewCache,
        names: TopicNames,
        dlq_secret: bytes,
    ) -> None:
        self.bus = bus
        self.table = RoutingTable(bus)
        self.new_views: list[View] = []
        self.maskers: list[Masker] = []  # their remembered tokens are forgotten per batch
        self._codec = codec
        self._views = views
        self._names = names
        self._resources: dict[str, ResourceRoute] = {}
        self._plans: dict[MaskPlan, int] = {}  # distinct plans, numbered for ``encode_id``
        for name in bus.schemas.names():
            for version in bus.schemas.versions(name):
                codec.register(bus.schemas.event_schema(name, version))
        for resource in bus.resources.values():
            self._resources[resource.id] = self._compile(resource, secrets, dlq_secret)

    def resource(self, resource_id: str) -> ResourceRoute:
        try:
            return self._resources[resource_id]
        except KeyError:
            raise UnroutableEvent(f"resource {resource_id!r} is not in the bus policy") from None

    def _compile(
        self, resource: Resource, secrets: TokenSecrets, dlq_secret: bytes
    ) -> ResourceRoute:
        domain = self.bus.schemas.latest(resource.schema)
        reader_fp = self._codec.register(self.bus.schemas.event_schema(resource.schema))
        grants = {}
        live = {g.key for g in self.table.effective_ignoring_expiry(resource.id)}
        for grant in self.bus.grants_for(resource.id):
            if grant.key in live:
                grants[grant.key] = self._grant_route(grant, resource, domain, secrets, None)
        dlq_grant = Grant(DLQ_SUBSCRIBER, resource.id, "L1")
        dead = self._grant_route(dlq_grant, resource, domain, secrets, dlq_secret)
        return ResourceRoute(resource, domain, reader_fp, compile_validator(domain), grants, dead)

    def _grant_route(
        self,
        grant: Grant,
        resource: Resource,
        domain: dict[str, Any],
        secrets: TokenSecrets,
        secret: bytes | None,
    ) -> GrantRoute:
        view = self._views.get(domain, grant, resource.key_field)
        if secret is None and view.plan.needs_secret:
            why = f"its grant on {resource.id} tokenises {_tokenised(view)}"
            secret = secrets.require(grant.subscriber, why)
        if not self._codec.known(view.fingerprint):
            self._codec.register(view.event_schema)
            self.new_views.append(view)
        masker = Masker(view.plan, secret)
        self.maskers.append(masker)
        topic = self._names.share(grant.subscriber, resource.id)
        plan = view.plan
        record_tokens = any(r.action == TOKEN for r in plan.rules)
        # a view whose only secret-dependent part is the key token is encoded once per
        # event and shared: the engine swaps the fixed-length key token in the bytes
        shared = grant.subscriber if record_tokens else ("key" if plan.needs_secret else "")
        return GrantRoute(
            grant,
            view,
            masker,
            topic,
            (view.fingerprint, shared, self._plans.setdefault(plan, len(self._plans))),
            _audit_tail(grant, view),
            view.plan.is_identity,
            subscriber_suffix(grant.subscriber),
            f"{grant.subscriber}/{resource.id}/",
            grant.subscriber.encode(),
        )


def _audit_tail(grant: Grant, view: View) -> bytes:
    """``{"event_id": "<id>`` + this + ``<routed_at>}`` is the audit record's JSON."""
    rest = json.dumps(
        {
            "subscriber": grant.subscriber,
            "resource": grant.resource,
            "grant": grant.key,
            "masked_fields": list(view.plan.masked_fields),
            "dropped_fields": list(view.plan.dropped_fields),
        }
    )
    return ('", ' + rest[1:-1] + ', "routed_at": ').encode()


def _tokenised(view: View) -> str:
    fields = [r.name for r in view.plan.rules if r.action == "token"]
    if view.plan.key_action == "token":
        fields.insert(0, "the entity key")
    return ", ".join(fields)


def schema_record(view: View) -> tuple[str, bytes]:
    """The ``syncbus.schemas`` record of a view: fingerprint hex, schema JSON."""
    return view.fingerprint_hex, json.dumps(view.event_schema, ensure_ascii=False).encode()
