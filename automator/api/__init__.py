"""The HTTP API on `automator run --listen`: events and contacts in, in automator's shapes
(`/v1/events`, `/v1/contacts`) and Segment's (`/v1/track`, `/v1/identify`, `/v1/batch`), and
erasure (`DELETE /v1/contacts/{email}`), each behind an API key with a scope.

The parts: `keys` (a request's key, and its last use), `limits` (requests per key, body
size), `segment` (Segment's calls as automator's records), `intake` (validate and store
items), `schema` (what the OpenAPI document describes) and `app` (the routes).
"""
