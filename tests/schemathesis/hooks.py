"""Schemathesis hooks for vcw: a serializer for tus's PATCH body type, which schemathesis
does not know (it is raw bytes, like application/octet-stream)."""

import schemathesis


@schemathesis.serializer("application/offset+octet-stream")
def offset_octets(ctx, value):
    if value is None:
        return None
    return value if isinstance(value, bytes) else str(value).encode()
