"""Accessibility checks with axe-core (npm, a dev dependency installed by `make setup`).

`with_axe(context)` injects axe into every page of a browser context as an init script
(through the DevTools protocol, so the pages' strict CSP needs no exception), and
`axe_violations(page)` runs it on the page as it is now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE_SCRIPT = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def with_axe(context: Any) -> Any:
    assert AXE_SCRIPT.exists(), "axe-core is missing: `make setup` installs it"
    context.add_init_script(path=str(AXE_SCRIPT))
    return context


def axe_violations(page: Any) -> list[str]:
    """Each WCAG A/AA violation as "rule: target, target" (empty when none)."""
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await axe.run(document, {
                runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
            });
            return result.violations.map(v => ({
                id: v.id, targets: v.nodes.map(n => n.target.join(" ")),
            }));
        }"""
    )
    return [f"{v['id']}: {', '.join(v['targets'])}" for v in found]
