"""Accessibility checks with axe-core (npm, a dev dependency installed by `make setup`).

`with_axe(context)` injects axe into every page of a browser context as an init script
(through the DevTools protocol, so the pages' strict CSP needs no exception), and
`axe_violations(page)` runs it on the page as it is now.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

AXE_SCRIPT = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"

WCAG_A_AA = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
# The impacts that fail a page in the tests that tolerate minor and moderate findings.
SERIOUS = ("serious", "critical")


def with_axe(context: Any) -> Any:
    assert AXE_SCRIPT.exists(), "axe-core is missing: `make setup` installs it"
    context.add_init_script(path=str(AXE_SCRIPT))
    return context


def axe_violations(
    page: Any,
    impacts: Collection[str] | None = None,
    tags: Sequence[str] | None = WCAG_A_AA,
) -> list[str]:
    """Each violation as "rule (impact): targets; first: why" (empty when none).

    `tags` selects the rules (None: every rule axe runs by default); `impacts`, when
    given, keeps only violations of those impacts ("minor" ... "critical").
    """
    found: list[dict[str, Any]] = page.evaluate(
        """async (tags) => {
            const options = tags ? {runOnly: {type: "tag", values: tags}} : {};
            const result = await axe.run(document, {...options, resultTypes: ["violations"]});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, targets: v.nodes.map(n => n.target.join(" ")),
                why: (v.nodes[0].failureSummary || "").split("\\n").slice(1).join(" ").trim(),
            }));
        }""",
        list(tags) if tags else None,
    )
    return [
        f"{v['id']} ({v['impact']}): {_targets(v['targets'])}; first: {v['why']}"
        for v in found
        if impacts is None or v["impact"] in impacts
    ]


def _targets(targets: list[str], shown: int = 3) -> str:
    more = f" and {len(targets) - shown} more" if len(targets) > shown else ""
    return ", ".join(targets[:shown]) + more
