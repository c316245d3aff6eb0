"""stack.servers.free_port: ports chosen up front stay free until bound (CI saw the mailbox's taken)."""

from __future__ import annotations

import socket

from stack import servers


def test_ports_come_from_below_the_kernels_ephemeral_range_never_twice_and_bindable() -> None:
    low = servers.ephemeral_low()
    ports = [servers.free_port() for _ in range(50)]

    assert len(set(ports)) == 50
    assert all(low - servers.PORT_SPAN <= port < low for port in ports)
    for port in ports[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_an_outgoing_connection_never_takes_such_a_port() -> None:
    """What went wrong: a port from the ephemeral range became some connection's local port."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            local = client.getsockname()[1]
    assert local >= servers.ephemeral_low() > servers.free_port()
