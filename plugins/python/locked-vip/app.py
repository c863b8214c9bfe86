"""`locked-vip`: a VIP's locked account is critical; remediation unlocks it,
recording the help-desk ticket the request came in on.

Written in Python against the steward_sdk package (sdk/python); built with
`steward plugin build plugins/python/locked-vip`."""

import steward_sdk as s
from wit_world.imports import accounts


class Plugin(s.Plugin):
    def describe(self):
        return s.descriptor(
            "locked-vip", "0.1.0", "Locked VIP accounts are critical; unlocks them under a help-desk ticket",
            s.text("vip-group", "Members of this group are VIPs", default="vip"),
            s.text("ticket", "The help-desk ticket an unlock is recorded under"),
            s.integer("max-unlocks", "The most accounts one run unlocks", default=5),
        )

    def check(self):
        group = s.param("vip-group")
        return [
            s.finding(f"locked-vip:{a.name}", s.CRITICAL, f"VIP account {a.name} is locked",
                      detail=f"{a.failed_attempts} failed sign-ins", resource=a.name,
                      source=a.source.name.lower())
            for a in accounts.locked()
            if group in a.groups and not a.disabled
        ]

    def remediate(self, findings):
        ticket = s.param("ticket")
        if not ticket:
            s.fail("unlocking needs the help-desk ticket: set the `ticket` parameter")
        changes = []
        for f in findings[: s.param("max-unlocks")]:
            outcome = accounts.unlock(f.resource)
            changes.append(s.change("unlock", f.resource, outcome, before="locked", after="unlocked",
                                    description=f"Unlocked {f.resource} for ticket {ticket}"))
            s.info("unlocked", account=f.resource, ticket=ticket)
        return changes
