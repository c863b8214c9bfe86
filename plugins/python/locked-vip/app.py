"""`locked-vip`: a VIP's locked account is critical; remediation unlocks it,
recording the help-desk ticket the request came in on.

Written in Python against the steward_sdk package (sdk/python); built with
`steward plugin build plugins/python/locked-vip`."""

import steward_sdk as s
from componentize_py_types import Err
from wit_world.imports import accounts


class Plugin(s.Plugin):
    def describe(self):
        return s.descriptor(
            "locked-vip", "0.1.0", "Locked VIP accounts are critical; unlocks them under a help-desk ticket",
            s.text("vip-group", "Members of this group are VIPs", default="vip"),
            s.text("ticket", "The help-desk ticket an unlock is recorded under",
                   required_to_remediate=True, pattern=r"[A-Z]+-[0-9]+"),
            s.integer("max-unlocks", "The most accounts one run unlocks", default=5),
        )

    def check(self):
        group = s.param("vip-group")
        found = []
        for a in accounts.locked():
            if group not in a.groups or a.disabled:
                continue
            # The day it was first seen locked, kept in plugin state.
            key = f"first-locked:{a.name}"
            since = s.load_date(key)
            if since is None:
                since = s.today()
                s.save(key, since)
            found.append(s.finding(
                f"locked-vip:{a.name}", s.CRITICAL, f"VIP account {a.name} is locked",
                detail=f"{a.failed_attempts} failed sign-ins, locked since {since}", resource=a.name,
                source=a.source.name.lower(), locked_days=-s.days_until(since)))
        return found

    def remediate(self, findings):
        # The host refuses to start without `ticket` (required to remediate).
        ticket = s.param("ticket")
        done = []
        for f in findings[: s.param("max-unlocks")]:
            source = accounts.AccountSource[s.field_of(f, "source").upper()]
            try:
                outcome = accounts.unlock(f.resource, source, f"ticket {ticket}")
            except Err as e:  # the others still get unlocked; this one is reported
                done.append(s.failed(f, e))
                continue
            done.append(s.change("unlock", f.resource, outcome, before="locked", after="unlocked",
                                 description=f"Unlocked {f.resource} for ticket {ticket}"))
            s.info("unlocked", account=f.resource, ticket=ticket)
        return done
