"""Enrichment: ports (``typing.Protocol``) the flow builder asks about addresses, interfaces
and policy rules, and the in-memory adapter the agent feeds from its endpoint table."""

from __future__ import annotations

from observer.enrich.resolver import (
    HOST_INFO,
    IDENTITY_HOST,
    IDENTITY_UNKNOWN,
    IDENTITY_WORLD,
    WORLD_INFO,
    EndpointInfo,
    Resolver,
    ResolverSnapshot,
    StaticResolver,
    canonical_ip,
)

__all__ = [
    "HOST_INFO",
    "IDENTITY_HOST",
    "IDENTITY_UNKNOWN",
    "IDENTITY_WORLD",
    "WORLD_INFO",
    "EndpointInfo",
    "Resolver",
    "ResolverSnapshot",
    "StaticResolver",
    "canonical_ip",
]
