"""axe-core, the accessibility engine, run in a page by the tests.

The engine is vendored for the tests only (tests/vendor/axe-core, with its version
and licence); the product never serves it.  It goes into each page as an init
script: one copy per browser context rather than per page, and out of reach of the
page's Content Security Policy, so the page is checked under its real policy.
"""

from __future__ import annotations

from pathlib import Path

AXE_SOURCE = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text()

# The rules a colour mode can change the outcome of: it changes colours, nothing else.
COLOUR_RULES = ["color-contrast", "link-in-text-block"]

RUN_AXE = """async (rules) => {
  const options = { resultTypes: ["violations"] };
  if (rules) options.runOnly = { type: "rule", values: rules };
  const results = await axe.run(document, options);
  return results.violations.map((violation) => ({
    id: violation.id,
    impact: violation.impact,
    help: violation.help,
    nodes: violation.nodes.map((node) => ({
      target: node.target.join(" "),
      summary: node.failureSummary,
    })),
  }));
}"""


def add_axe(context) -> None:
    """axe-core in every page ``context`` opens from now on."""
    context.add_init_script(AXE_SOURCE)


def axe_violations(page, rules: list[str] | None = None) -> list[dict]:
    """Every axe-core violation on the page as it is now: of ``rules``, or of the
    default rules (WCAG 2 A/AA and best practices)."""
    return page.evaluate(RUN_AXE, rules)


def describe(violations: list[dict], where: str) -> list[str]:
    """One line per violation and one per element it was found on: id, target, summary."""
    lines = []
    for violation in violations:
        lines.append(f"{where}: {violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"]:
            summary = " ".join(node["summary"].split())
            lines.append(f"    {node['target']}: {summary}")
    return lines
