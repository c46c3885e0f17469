"""Stands in for ``kubectl port-forward`` pinned to one pod: forwards ``listen:port`` to the pod's
``ip:port`` and exits ("lost connection to pod") once the pod stops accepting connections, as
kubectl does when the PDP restarts. Usage: ``python kubectl.py LISTEN POD_IP PORT...``."""

from __future__ import annotations

import asyncio
import socket
import sys

from lab.backends import pod


async def main(listen: str, target: str, ports: list[str]) -> None:
    await pod.start_forwarders([pod.Forward(int(p), target, int(p)) for p in ports], host=listen)
    print(f"Forwarding from {listen} -> {target} {ports}", flush=True)
    while True:
        await asyncio.sleep(1)
        try:
            socket.create_connection((target, int(ports[0])), timeout=1).close()
        except OSError:
            print("lost connection to pod", flush=True)
            raise SystemExit(1) from None


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
