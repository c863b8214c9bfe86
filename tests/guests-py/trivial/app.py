"""The smallest useful Python plugin: one finding, no capability call. The
invoke benchmark's Python twin of guests/trivial."""

import steward_sdk as s


class Plugin(s.Plugin):
    def describe(self):
        return s.descriptor("trivial-py", "0.1.0", "Always finds one thing")

    def check(self):
        return [s.finding("ok", s.INFO, "all good")]
