"""The serial link to the microcontroller: framing, messages, the link, the client, a simulator.

Layers, lowest first: `framing` (COBS, CRC-32, limits, version), `messages` (typed requests and
answers), `link` (a port plus framing: `open_link(url)`), `client` (`McuClient`, the device's
calls), `keys` (Ed25519 keys derived from the face key); the microcontroller side is `mcu` (its
rules), `mcu_state` (its flash) and `simulator` (`McuSimulator`, serving `mcu` over any port).
The protocol is specified in PROTOCOL.md next to this file.
"""
