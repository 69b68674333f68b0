"""Render governance/access-matrix.md from the route × role table.

Run `python -m service.security.matrix` after changing service/security/policy.py.

A test fails when the committed file differs from what this renders, so the document cannot drift.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from service.security.policy import GUARDIAN_ROUTES, PUBLIC_ROUTES, ROUTE_ROLES, iter_routes
from service.security.principal import Role

MATRIX_PATH = Path(__file__).resolve().parents[2] / "governance" / "access-matrix.md"

_HEADER = """# Access matrix (route × role)

Generated from `service/security/policy.py` by `python -m service.security.matrix`; do not edit by
hand. `tests/service/security/test_policy.py` fails when this file is out of date, and walks every
route × role against the running app to prove the table is what is enforced.

Enforcement: one app-wide FastAPI dependency (`service/security/deps.py`, `authorize`) verifies the
bearer token and looks the route's name up in `ROUTE_ROLES`. A route missing from the table is
refused for everyone (default deny). "public" routes need no token (liveness, readiness, metrics
while `TRIAGE_PUBLIC_METRICS` is true, the API description, the FHIR CapabilityStatement, V2
health).

Rows are scoped further by one module, `service/security/visibility.py`, which every route asks
(see `governance/organisation-boundaries.md`): every role but admin sees and changes only the
patients of the organisations its token acts for (HelseID `orgnr_parent`, and for an integration
client the organisations its `triage/organisations` claim names), narrowed to the units its token
names; another organisation's patient is answered as if it did not exist. Drift reports and audit
rows are scoped by organisation. A patient is shared across organisations only by a recorded
transfer or a time-limited read grant. `tests/service/security/test_visibility_matrix.py` walks
every route × role × {own organisation, other organisation, other unit, guardian}.

Guardian context (a token acting for a parent or guardian, Helsenorge representation): only the
routes marked **G** and only for one named patient; refused for patients who withheld information
from their parents (12–16) and for every patient aged 16 or more. See
`governance/children-and-young-people.md`.

"""


def render_access_matrix(app: Any) -> str:
    roles = list(Role)
    lines = [
        _HEADER.rstrip("\n"),
        "",
        "| route name | method | path | " + " | ".join(r.value for r in roles) + " | G |",
        "|---|---|---|" + "---|" * (len(roles) + 1),
    ]
    for route in sorted(iter_routes(app), key=lambda r: (r.path, r.methods, r.name)):
        if route.name in PUBLIC_ROUTES:
            cells = ["public"] * len(roles)
        else:
            allowed = ROUTE_ROLES.get(route.name, frozenset())
            cells = ["yes" if r in allowed else "–" for r in roles]
        guardian = "G" if route.name in GUARDIAN_ROUTES else ""
        lines.append(
            f"| `{route.name}` | {', '.join(route.methods)} | `{route.path}` | "
            + " | ".join(cells)
            + f" | {guardian} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    from service.app import create_app
    from service.config import Settings

    text = render_access_matrix(create_app(Settings()))
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else MATRIX_PATH
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
