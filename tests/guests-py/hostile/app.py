"""A hostile Python plugin: what its check does is chosen by the `behaviour`
parameter. The host must contain each like a Rust plugin's."""

import steward_sdk as s
from wit_world.imports import accounts


class Plugin(s.Plugin):
    def describe(self):
        return s.descriptor(
            "hostile-py", "0.1.0", "Misbehaves on purpose",
            s.text("behaviour", "loop | grow | unlock-in-check | socket | raise", default="raise"),
        )

    def check(self):
        b = s.param("behaviour")
        if b == "loop":
            n = 0
            while True:
                n += 1
        if b == "grow":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if b == "unlock-in-check":
            accounts.unlock("root", accounts.AccountSource.LOCAL, "hostile")
        if b == "socket":
            import socket
            socket.create_connection(("127.0.0.1", 9), timeout=1)
        raise ValueError("the plugin gave up")
