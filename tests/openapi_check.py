"""Whether an answer of `retrieve serve` is one its /openapi.json declares: the status, the
content type and, for JSON, the body against the declared schema (tests of the API use it)."""

from __future__ import annotations

from fnmatch import fnmatch


def conforms(spec: dict, method: str, route: str, response) -> tuple[str, str, int]:
    """Assert that ``response`` is an answer ``spec`` declares for ``method route``; return
    (method, route, status), for a test to count what it checked."""
    from jsonschema import Draft202012Validator

    declared = spec["paths"][route][method]["responses"]
    status = response.status_code
    assert str(status) in declared, f"{method.upper()} {route} answered {status}, undeclared"
    content = declared[str(status)]["content"]
    kind = response.headers["content-type"].split(";")[0]
    assert any(fnmatch(kind, k) for k in content), f"{method.upper()} {route}: {kind}"
    if kind == "application/json":
        schema = {**content["application/json"]["schema"], "components": spec["components"]}
        Draft202012Validator(schema).validate(response.json())
    return method, route, status
